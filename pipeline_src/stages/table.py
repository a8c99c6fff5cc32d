"""`table` job: one paper table, by name: its rows' evaluations joined into the paper's layout (accuracy in
percent), the side-by-side with the published numbers, the flat metrics DVC shows (``dvc metrics show``) and
the accuracy-vs-eps plot data (``dvc plots show``).

Example:
    python -m pipeline_src.stages.table --table table2_chest3_resnet18 \\
        --evals results/metrics/eval/chest3_resnet18_ln0_la0_s0.json ... --paper paper/table2_chest_resnet18.csv \\
        --out results/tables/table2_chest3_resnet18.csv --vs_paper results/tables/table2_chest3_resnet18_vs_paper.csv \\
        --metrics results/metrics/tables/table2_chest3_resnet18.json --plot results/plots/table2_chest3_resnet18_eps.csv
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline_src.config import fmt_number
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    plan.table(table)
    return [f"tables.{table}", "attacks"]  # its rows, and the attacks that order its columns


def row_key(lambda_n: str, lambda_a: str) -> str:
    """A row in the metrics file: NA, or ln<..>_la<..> (the model name's notation)."""
    return "NA" if float(lambda_n) == 0 and float(lambda_a) == 0 else f"ln{lambda_n}_la{lambda_a}"


def flat_metrics(table, columns: list[str], evals: list[dict]) -> dict:
    """row -> clean, each attack and their mean (percent), and the number of test images."""
    n_test = {row_key(fmt_number(ev["lambda_n"]), fmt_number(ev["lambda_a"])): ev["n_test"] for ev in evals}
    out = {}
    for _, row in table.iterrows():
        key = row_key(row["lambda_n"], row["lambda_a"])
        attacks = [c for c in columns if c != "clean"]
        values = {c: round(float(row[c]), 4) for c in columns}
        values["mean_adversarial"] = round(sum(float(row[c]) for c in attacks) / len(attacks), 4) if attacks else None
        values["n_test"] = n_test[key]
        out[key] = values
    return out


def eps_curves(table, attacks: dict[str, dict]) -> str:
    """Accuracy against eps (0 = clean) per row and method, one column each: a DVC plot (x = eps)."""
    methods = {}
    for name, a in attacks.items():
        if a["method"] in ("fgsm", "ifgsm") and name in table.columns:
            methods.setdefault(a["method"], []).append((float(a["eps"]), name))
    series = {}
    for _, row in table.iterrows():
        label = row_key(row["lambda_n"], row["lambda_a"])
        for method, points in sorted(methods.items()):
            series[f"{label} {method}"] = {0.0: float(row["clean"]), **{eps: float(row[n]) for eps, n in points}}
    all_eps = sorted({e for s in series.values() for e in s})
    lines = ["eps," + ",".join(series)]
    for eps in all_eps:
        lines.append(fmt_number(eps) + "," + ",".join(f"{s[eps]:.2f}" if eps in s else "" for s in series.values()))
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table name (a key of 'tables')")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation records of the table's models, in row order")
    p.add_argument("--paper", default=None, help="the published table (.csv), if any")
    p.add_argument("--out", required=True, help="the table (.csv)")
    p.add_argument("--vs_paper", required=True, help="ours vs the paper (.csv)")
    p.add_argument("--metrics", required=True, help="flat metrics per row (.json, DVC metrics)")
    p.add_argument("--plot", required=True, help="accuracy vs eps (.csv, a DVC plot)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, name))
    models = [m.name for m in job.plan.table(name)]
    common.expect([Path(p).stem for p in args.evals], models, f"table {name}: evaluations")
    from pipeline_src.io import write_json, write_text
    from pipeline_src.tables import write_tables

    columns = ["clean", *job.plan.attacks]
    evals = [json.loads(Path(p).read_text()) for p in args.evals]
    dataset = view["tables"][name]["dataset"]
    with job.track("table", name, dataset, {"columns": ",".join(columns)}, {"table": name, "models": ",".join(models)},
                   run_name=f"table/{name}") as rec:
        for path, ev in zip(args.evals, evals):
            rec.link(f"row_run_id.{row_key(fmt_number(ev['lambda_n']), fmt_number(ev['lambda_a']))}.s{ev['seed']}", path)
        table = write_tables(args.evals, columns, args.out, args.paper, args.vs_paper)
        metrics = flat_metrics(table, columns, evals)
        write_json(args.metrics, metrics)
        write_text(args.plot, eps_curves(table, view["attacks"]))
        for row, values in metrics.items():
            rec.log_metrics({f"{row}.{k}": v for k, v in values.items() if v is not None})
        for path in (args.out, args.vs_paper, args.metrics):
            rec.log_artifact(path, "tables")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.table", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
