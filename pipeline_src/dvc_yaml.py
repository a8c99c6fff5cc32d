"""dvc.yaml from the same plan as the Snakemake rules: one stage per Snakemake job, the same CLI call.

Why generated rather than templated: model names and output paths are derived from the table rows
(``plan.py``), which DVC's ``${}`` templating cannot compute, and a second hand-written copy of every
command would drift from ``workflow/rules/``. ``tests/test_dvc.py`` proves that both DAGs hold the
same commands, inputs and outputs.

After editing params.yaml: ``python -m pipeline_src dvc-yaml``, then ``dvc repro``. The first stage,
``dvc_yaml_check``, stops ``dvc repro`` with that instruction when dvc.yaml is stale, so a stage never
runs an old command while DVC records the new parameters.

Each stage lists as ``params`` only the keys its command reads (so DVC reports exactly which
parameter made it stale); every value is also in the command itself.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from pipeline_src.config import ParamsError, load_params, to_cli_args, validate_params
from pipeline_src.io import write_text
from pipeline_src.plan import Plan, build_plan

TRACKING_MARKER = "results/metrics/tracking_init.json"
CHECK_STAMP = "results/metrics/dvc_yaml_check.json"
HEADER = """\
# Generated from params.yaml by `python -m pipeline_src dvc-yaml` (pipeline_src/dvc_yaml.py): do not edit.
# After editing params.yaml, regenerate it, then `dvc repro`. One stage per Snakemake job, calling the
# same CLI with the same arguments (tests/test_dvc.py checks both DAGs agree). See docs/tracking.md.
"""


def code(*modules: str) -> list[str]:
    """The source files a stage runs, as ``common.smk``'s ``code()`` lists them."""
    return [f"pipeline_src/{m}" for m in ("cli.py", "config.py", "io.py", *modules)]


def stage_name(*parts: str) -> str:
    """DVC stage names allow no punctuation but '_' and '-': the decimal point of a lambda becomes 'p'
    (train_skin4_resnet18_ln0p1_la0_s0 trains skin4_resnet18_ln0.1_la0_s0)."""
    return "_".join(parts).replace(".", "p")


def _cmd(stage: str, *args: str) -> str:
    # `python`, not the absolute interpreter: dvc.yaml is committed and runs in any activated venv
    return shlex.join(["python", "-m", "pipeline_src", stage, *args])


def paper_deps(cfg: dict, root: Path, section: str, table: str) -> list[str]:
    """The published table a table stage compares with (``<section>.<table>.paper``), if any, as a dep."""
    paper_file = cfg[section][table].get("paper")
    if paper_file and not (root / "paper" / paper_file).is_file():
        raise ParamsError(f"'{section}.{table}.paper' = {paper_file!r} is not a file in {root / 'paper'}")
    return [f"paper/{paper_file}"] if paper_file else []


def _present(raw: dict, keys: list[str]) -> list[str]:
    """Keys that exist in the parameter file (DVC refuses a params key the file lacks; such values
    come from the schema's defaults and are still in the command)."""
    out = []
    for key in keys:
        node: Any = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            out.append(key)
    return out


def _stage(cmd: str, deps: list[str], outs: list[str], *, params: list[str] | None = None,
           metrics: list[str] | None = None, uncached: list[str] | None = None,
           markers: list[str] | None = None) -> dict:
    stage: dict[str, Any] = {"cmd": cmd, "deps": deps}
    if params:
        stage["params"] = params
    all_outs: list[Any] = list(outs) + [{p: {"cache": False}} for p in uncached or []]
    # A marker with constant content that DVC must not delete before its stage runs: when the stage
    # fails (a stale dvc.yaml, an unreachable store) every stage below would otherwise look changed.
    all_outs += [{p: {"cache": False, "persist": True}} for p in markers or []]
    if all_outs:
        stage["outs"] = all_outs
    if metrics:
        stage["metrics"] = list(metrics)
    return stage


def build_stages(plan: Plan, raw: dict, root: Path = Path(".")) -> dict[str, dict]:
    """Stage name -> stage, in DAG order. ``raw``: the parameter file as written (for ``params``)."""
    cfg = plan.cfg
    tracking = cfg["tracking"]["enabled"]
    track = ["--tracking"] if tracking else []
    stages: dict[str, dict] = {}

    stages["dvc_yaml_check"] = _stage(
        _cmd("dvc-yaml", "--params", "params.yaml", "--out", "dvc.yaml", "--check", "--stamp", CHECK_STAMP),
        ["params.yaml", *code("dvc_yaml.py", "plan.py")], [], markers=[CHECK_STAMP])
    ready = [CHECK_STAMP]  # every other stage runs after the check

    stages["tracking_init"] = _stage(
        _cmd("tracking-init", "--experiments", *plan.datasets, *([] if tracking else ["--disabled"]),
             "--out", TRACKING_MARKER),
        [*ready, *code("tracking.py")], [], params=_present(raw, ["tracking"]), markers=[TRACKING_MARKER])
    tracked = [*ready, TRACKING_MARKER]

    for ds in plan.datasets:
        out_dir, spec = f"data/prepared/{ds}", cfg["datasets"][ds]
        # a folder dataset's labels.csv, as data.smk's raw_inputs(): editing it re-prepares the dataset
        raw_deps = [os.path.join(spec["path"], "labels.csv")] if spec["source"] == "folder" else []
        stages[stage_name("prepare", ds)] = _stage(
            _cmd("prepare", *to_cli_args(plan.dataset_spec(ds)), "--out_dir", out_dir),
            [*ready, *raw_deps, *code("data/prepare.py", "data/subsample.py", "data/synthetic.py", "data/folder.py",
                       "data/raw.py", "data/catalog.py", "data/download.py", "data/archive.py", "data/isic2018.py",
                       "data/rsna.py", "data/medmnist_source.py")],
            [f"{out_dir}/train.pt", f"{out_dir}/test.pt", f"{out_dir}/summary.json"],
            params=_present(raw, ["seed", f"datasets.{ds}"]))

    train_keys = [f"training.{k}" for k in cfg["training"]] + [
        f"model.{k}" for k in ("decoder_activation", "vgg_head", "vgg_width", "vgg_batch_norm", "pretrained")]
    for job in plan.models.values():
        ds, out = f"data/prepared/{job.dataset}", f"models/{job.name}.pt"
        metrics = f"results/metrics/train/{job.name}.json"
        keys = ["seed", "seeds", *train_keys, f"model.decoder_stage.{job.arch}"]
        keys += ["surrogate"] if job.surrogate else []  # the surrogate's arch and seed come from there
        stages[stage_name("train", job.name)] = _stage(
            _cmd("train", *to_cli_args(plan.train_config(job.name)), "--train", f"{ds}/train.pt",
                 "--test", f"{ds}/test.pt", "--out", out, "--metrics", metrics, *track),
            [*tracked, f"{ds}/train.pt", f"{ds}/test.pt",
             *code("train.py", "losses.py", "models/denoising.py", "evaluate.py", "checkpoints.py",
                   "data/prepare.py")],
            [out], params=_present(raw, keys), metrics=[metrics])

    for ds in plan.datasets:
        surrogate, test = f"models/{plan.surrogate(ds).name}.pt", f"data/prepared/{ds}/test.pt"
        for attack in plan.attacks:
            out, metrics = f"data/adversarial/{ds}/{attack}.pt", f"results/metrics/attacks/{ds}/{attack}.json"
            stages[stage_name("attack", ds, attack)] = _stage(
                _cmd("attack", *to_cli_args(plan.attack_config(attack)), "--name", attack, "--surrogate",
                     surrogate, "--test", test, "--out", out, "--metrics", metrics, *track),
                [*tracked, surrogate, test,
                 *code("attacks.py", "adversarial.py", "checkpoints.py", "models/denoising.py", "evaluate.py")],
                [out], metrics=[metrics],
                params=_present(raw, ["seed", f"attacks.{attack}", "evaluation.batch_size", "training.threads"]))

    for job in plan.evaluated_models():
        test = f"data/prepared/{job.dataset}/test.pt"
        adversarial = [f"data/adversarial/{job.dataset}/{a}.pt" for a in plan.attacks]
        out = f"results/metrics/eval/{job.name}.json"
        stages[stage_name("evaluate", job.name)] = _stage(
            _cmd("evaluate", "--model", f"models/{job.name}.pt", "--test", test, "--dataset", job.dataset,
                 "--adversarial", *(f"{a}={p}" for a, p in zip(plan.attacks, adversarial)),
                 "--batch_size", str(cfg["evaluation"]["batch_size"]), "--out", out, *track),
            [*tracked, f"models/{job.name}.pt", test, *adversarial,
             *code("evaluate.py", "checkpoints.py", "models/denoising.py")],
            [], params=_present(raw, ["evaluation.batch_size"]), metrics=[out])

    for table, rows in plan.tables.items():
        evals = [f"results/metrics/eval/{m.name}.json" for m in rows]
        paper = paper_deps(cfg, root, "tables", table)
        out, vs_paper = f"results/tables/{table}.csv", f"results/tables/{table}_vs_paper.csv"
        stages[stage_name("table", table)] = _stage(
            _cmd("tables", "--evals", *evals, "--columns", "clean", *plan.attacks,
                 *(["--paper", *paper] if paper else []), "--out", out, "--vs_paper", vs_paper, *track),
            [*tracked, *evals, *paper, *code("tables.py")],
            # the tables are committed to git, so DVC must not move them into its cache
            [], params=_present(raw, [f"tables.{table}"]), uncached=[out, vs_paper])

    from pipeline_src.dvc_combined import combined_stages  # Table 4 (workflow/rules/denoisers.smk)

    stages.update(combined_stages(plan, raw, root, tracked, track))
    stages.update(report_stages(plan, track, ready, tracked))
    stages.update(whitebox_stages(plan, raw, tracked, track))
    return stages


FIGURE_KINDS = ("accuracy_vs_eps", "ablation", "training", "vs_paper", "reconstructions")  # as report.smk


def report_stages(plan: Plan, track: list[str], ready: list[str], tracked: list[str]) -> dict[str, dict]:
    """Twins of report.smk's stats, figures and attack_figure jobs (the HTML report is no job)."""
    stages: dict[str, dict] = {}
    for table, jobs in plan.tables.items():
        evals = [f"results/metrics/eval/{m.name}.json" for m in jobs]
        out = f"results/tables/{table}_stats.csv"
        stages[stage_name("stats", table)] = _stage(
            _cmd("stats", "--evals", *evals, "--columns", "clean", *plan.attacks, "--out", out),
            [*ready, *evals, *code("stats.py")], [], uncached=[out])
    for table, jobs in plan.tables.items():
        ds = plan.cfg["tables"][table]["dataset"]
        first: dict[tuple[float, float], str] = {}
        for job in jobs:
            if job.lambda_a > 0:
                first.setdefault((job.lambda_n, job.lambda_a), f"models/{job.name}.pt")
        stats, vs_paper = f"results/tables/{table}_stats.csv", f"results/tables/{table}_vs_paper.csv"
        train = [f"results/metrics/train/{m.name}.json" for m in jobs]
        attacks = [f"results/metrics/attacks/{ds}/{a}.json" for a in plan.attacks]
        test = f"data/prepared/{ds}/test.pt"
        stages[stage_name("figures", table)] = _stage(
            _cmd("figures", "--table", table, "--dataset", ds, "--stats", stats, "--vs_paper", vs_paper,
                 "--train_metrics", *train, "--attack_metrics", *attacks, "--models", *first.values(),
                 "--test", test, "--prefix", f"results/figures/{table}", *track),
            [*tracked, stats, vs_paper, *train, *attacks, *first.values(), test,
             *code("figures.py", "checkpoints.py", "models/denoising.py", "data/prepare.py")],
            [], uncached=[f"results/figures/{table}_{k}.png" for k in FIGURE_KINDS])
    for ds in plan.datasets:
        test, out = f"data/prepared/{ds}/test.pt", f"results/figures/{ds}_attacks.png"
        adversarial = [f"data/adversarial/{ds}/{a}.pt" for a in plan.attacks]
        stages[stage_name("attack_figure", ds)] = _stage(
            _cmd("attack-figure", "--dataset", ds, "--test", test,
                 "--adversarial", *(f"{a}={p}" for a, p in zip(plan.attacks, adversarial)), "--out", out, *track),
            [*tracked, test, *adversarial, *code("figures.py", "data/prepare.py")], [], uncached=[out])
    return stages


def whitebox_stages(plan: Plan, raw: dict, tracked: list[str], track: list[str]) -> dict[str, dict]:
    """workflow/rules/whitebox.smk's jobs: one per model of a white-box table, and its tables."""
    if not plan.whitebox:
        return {}
    stages: dict[str, dict] = {}
    args = to_cli_args(plan.whitebox_config())
    for job in plan.whitebox_models():
        test, out = f"data/prepared/{job.dataset}/test.pt", f"results/metrics/whitebox/{job.name}.json"
        stages[stage_name("whitebox", job.name)] = _stage(
            _cmd("whitebox", *args, "--model", f"models/{job.name}.pt", "--test", test, "--dataset", job.dataset,
                 "--out", out, *track),
            [*tracked, f"models/{job.name}.pt", test,
             *code("whitebox.py", "attacks.py", "evaluate.py", "checkpoints.py", "models/denoising.py")],
            [], params=_present(raw, ["seed", "whitebox.max_images", "whitebox.attacks", "evaluation.batch_size",
                                 "training.threads"]),
            metrics=[out])
    for table in plan.whitebox_tables:
        evals = [f"results/metrics/whitebox/{m.name}.json" for m in plan.tables[table]]
        out = f"results/tables/whitebox_{table}.csv"
        stages[stage_name("whitebox_table", table)] = _stage(
            _cmd("tables", "--whitebox", "--evals", *evals, "--columns", "clean", *plan.whitebox, "--out", out, *track),
            [*tracked, *evals, *code("tables.py")], [], params=_present(raw, [f"tables.{table}"]), uncached=[out])
    return stages


def render(params_path: str | Path, root: str | Path | None = None) -> str:
    """dvc.yaml's text for ``params_path``; ``root``: the repository (default: the file's folder)."""
    params_path = Path(params_path)
    raw = load_params(params_path)
    plan = build_plan(validate_params(raw, source=str(params_path)))
    stages = build_stages(plan, raw, Path(root) if root is not None else params_path.parent)
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=float("inf"), allow_unicode=True)


def write_dvc_yaml(params_path: str | Path, out: str | Path) -> None:
    write_text(out, render(params_path))


def check_dvc_yaml(params_path: str | Path, out: str | Path, stamp: str | Path | None) -> None:
    """Raise when ``out`` is not what ``params_path`` generates; else write ``stamp`` (constant content)."""
    current = Path(out).read_text() if Path(out).is_file() else ""
    if current != render(params_path):
        raise ParamsError(f"{out} is out of date with {params_path} (it was generated from other parameters): "
                          f"run `python -m pipeline_src dvc-yaml --params {params_path} --out {out}`, "
                          f"then `dvc repro` again")
    if stamp:
        # constant content: the stages that depend on it must not become stale when params.yaml changes
        write_text(stamp, "{\"dvc_yaml\": \"up to date\"}\n")
