"""`figures` job: one paper table's figures (accuracy vs eps with 95% bands, ablation curves, training
curves, ours vs the paper, the embedded auto-encoder's reconstructions).

Example:
    python -m pipeline_src.stages.figures --table table2_chest3_resnet18 \\
        --stats results/tables/table2_chest3_resnet18_stats.csv --vs_paper results/tables/table2_chest3_resnet18_vs_paper.csv \\
        --train_metrics results/metrics/train/... --attack_metrics results/metrics/attacks/chest3/... \\
        --models models/chest3_resnet18_ln0_la10_s0.pt ... --test data/prepared/chest3/test.pt \\
        --out accuracy_vs_eps=results/figures/table2_chest3_resnet18_accuracy_vs_eps.png ...
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    plan.table(table)
    return [f"tables.{table}"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table name (a key of 'tables')")
    for name, what in (("stats", "the table's statistics (.csv)"), ("vs_paper", "ours vs the paper (.csv)"),
                       ("test", "prepared test split (.pt)")):
        p.add_argument(f"--{name}", required=True, help=what)
    for name, what in (("train_metrics", "training records of the table's models"),
                       ("attack_metrics", "attack records of the dataset"),
                       ("models", "models whose auto-encoder is shown (one per row with lambda_a > 0)")):
        p.add_argument(f"--{name}", nargs="*", default=[], help=what)
    p.add_argument("--out", nargs="+", required=True, metavar="KIND=PATH", help="the figures to write (.png)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, name))
    paths = common.pairs(args.out, "--out")
    from pipeline_src.figures import table_figures

    with job.track("figures", name, view["tables"][name]["dataset"], tags={"table": name},
                   run_name=f"figures/{name}") as rec:
        table_figures(name, args.stats, args.vs_paper, args.train_metrics, args.attack_metrics, args.models,
                      args.test, paths)
        for path in paths.values():
            rec.log_artifact(path, "figures")
        rec.log_artifact(args.stats, "tables")  # the statistics the bands show


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.figures", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
