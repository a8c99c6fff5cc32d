"""One CLI for every stage: ``python -m pipeline_src <stage> ...``.

Snakemake (and DVC) call these with explicit arguments; paths are always passed in, never repeated
here. Each stage's arguments mirror the dataclass it fills (``config.to_cli_args``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from pipeline_src.config import (AttackConfig, DatasetSpec, ParamsError, TrainConfig, WhiteboxConfig,
                                 add_dataclass_arguments, from_namespace, load_params, validate_params)
from pipeline_src import tracking

log = logging.getLogger("pipeline_src")


def _kv_path(item: str) -> tuple[str, str]:
    name, sep, path = item.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {item!r}")
    return name, path


def cmd_validate(args: argparse.Namespace) -> None:
    cfg = validate_params(load_params(*args.params), source=" + ".join(args.params))
    print(json.dumps(cfg, indent=2) if args.show else f"ok: {' + '.join(args.params)}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from pipeline_src.data.prepare import prepare

    prepare(from_namespace(DatasetSpec, args), args.out_dir)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def cmd_train(args: argparse.Namespace) -> None:
    from pipeline_src.data.prepare import load_split
    from pipeline_src.io import write_json
    from pipeline_src.train import train_model

    cfg = from_namespace(TrainConfig, args)
    model = Path(args.out).stem
    data_dir = Path(args.train).parent  # data/prepared/<dataset>/: the dataset names the experiment
    summary = _read_json(data_dir / "summary.json")
    tags = {"stage": "train", "model": model, "dataset": data_dir.name,
            "data_sha256_train": summary.get("train", {}).get("sha256", "unknown"),
            "data_sha256_test": summary.get("test", {}).get("sha256", "unknown")}
    with tracking.start_run(args.tracking, data_dir.name, model, tags, dataclasses.asdict(cfg)) as run:
        history = train_model(cfg, load_split(args.train), load_split(args.test), args.out, args.checkpoint,
                              on_epoch=run.log_epoch)
        record = {"config": dataclasses.asdict(cfg), "history": history}
        write_json(args.metrics, record)
        run.log_artifact(args.out, "checkpoint")
        run.log_dict({"model": model, "dataset": data_dir.name, **record}, "resolved_config.json")


def cmd_attack(args: argparse.Namespace) -> None:
    from pipeline_src.adversarial import craft
    from pipeline_src.io import write_json

    cfg = from_namespace(AttackConfig, args)
    dataset, surrogate = Path(args.test).parent.name, Path(args.surrogate).stem
    tags = {"stage": "attack", "attack": args.name, "dataset": dataset, "surrogate": surrogate}
    params = {"attack": args.name, **{k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}}
    with tracking.start_run(args.tracking, dataset, f"{dataset}/{args.name}", tags, params) as run:
        run.set_tags({"surrogate_run_id": run.find(stage="train", model=surrogate) or "unknown"})
        metrics = craft(cfg, args.surrogate, args.test, args.out)
        write_json(args.metrics, {"attack": args.name, "config": dataclasses.asdict(cfg), **metrics})
        run.log_metrics(metrics)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from pipeline_src.evaluate import evaluate_model
    from pipeline_src.io import write_json

    model, adversarial = Path(args.model).stem, dict(args.adversarial)
    tags = {"stage": "evaluate", "model": model, "dataset": args.dataset}
    params = {"model": model, "batch_size": args.batch_size, "attacks": ",".join(adversarial)}
    with tracking.start_run(args.tracking, args.dataset, f"eval/{model}", tags, params) as run:
        # the links that lead from a table row to the runs that made it
        run.set_tags({"train_run_id": run.find(stage="train", model=model) or "unknown",
                      **{f"attack_run_id.{a}": run.find(stage="attack", attack=a) or "unknown" for a in adversarial}})
        result = evaluate_model(args.model, args.test, adversarial, args.batch_size)
        write_json(args.out, {"model": model, "dataset": args.dataset, **result})
        run.log_metrics({f"accuracy_{name}": acc for name, acc in result["accuracy"].items()})


def cmd_whitebox(args: argparse.Namespace) -> None:
    from pipeline_src.io import write_json
    from pipeline_src.whitebox import whitebox_model

    cfg = from_namespace(WhiteboxConfig, args)
    cfg.parsed()  # a malformed attack token fails here, before the model is loaded
    model = Path(args.model).stem
    tags = {"stage": "whitebox", "model": model, "dataset": args.dataset}
    params = {"model": model, **{k: (",".join(v) if isinstance(v, tuple) else v)
                                 for k, v in dataclasses.asdict(cfg).items()}}
    with tracking.start_run(args.tracking, args.dataset, f"whitebox/{model}", tags, params) as run:
        run.set_tags({"train_run_id": run.find(stage="train", model=model) or "unknown"})
        result = whitebox_model(cfg, args.model, args.test)
        write_json(args.out, {"model": model, "dataset": args.dataset, **result})
        run.log_metrics({f"accuracy_{name}": acc for name, acc in result["accuracy"].items()})


def cmd_tables(args: argparse.Namespace) -> None:
    from pipeline_src.tables import write_tables

    evals = [_read_json(Path(p)) for p in args.evals]
    models = [ev.get("model", Path(p).stem) for ev, p in zip(evals, args.evals)]
    dataset = evals[0].get("dataset", "tables") if evals else "tables"
    table = Path(args.out).stem
    # rows from white-box records: their own stage, so the paper's tables stay one "table" run each
    stage, row_stage = ("whitebox_table", "whitebox") if args.whitebox else ("table", "evaluate")
    tags = {"stage": stage, "table": table, "dataset": dataset, "models": ",".join(models)}
    params = {"columns": ",".join(args.columns)}
    with tracking.start_run(args.tracking, dataset, f"table/{table}", tags, params) as run:
        run.set_tags({f"eval_run_id.{m}": run.find(stage=row_stage, model=m) or "unknown" for m in models})
        write_tables(args.evals, args.columns, args.out, args.paper, args.vs_paper)
        for path in (args.out, args.vs_paper):
            if path:
                run.log_artifact(path, "tables")


def cmd_stats(args: argparse.Namespace) -> None:
    from pipeline_src.stats import write_stats

    # no MLflow run of its own (a second or so of import per table): the figures run logs the CSV
    write_stats(args.evals, args.columns, args.out, args.fields)


def cmd_figures(args: argparse.Namespace) -> None:
    from pipeline_src.figures import table_figures

    tags = {"stage": "figures", "table": args.table, "dataset": args.dataset}
    with tracking.start_run(args.tracking, args.dataset, f"figures/{args.table}", tags) as run:
        paths = table_figures(args.table, args.stats, args.vs_paper, args.train_metrics, args.attack_metrics,
                              args.models, args.test, args.prefix)
        for path in paths.values():
            run.log_artifact(path, "figures")
        run.log_artifact(args.stats, "tables")  # the statistics the bands show


def cmd_attack_figure(args: argparse.Namespace) -> None:
    from pipeline_src.figures import attack_figure

    tags = {"stage": "figures", "dataset": args.dataset}
    with tracking.start_run(args.tracking, args.dataset, f"figures/{args.dataset}_attacks", tags) as run:
        attack_figure(args.dataset, args.test, dict(args.adversarial), args.out)
        run.log_artifact(args.out, "figures")


def cmd_summary(args: argparse.Namespace) -> None:
    from pipeline_src.summary import summary

    print(summary(Path(args.root)))


def cmd_tracking_init(args: argparse.Namespace) -> None:
    from pipeline_src.io import write_json

    if not args.disabled:
        # fail in seconds, not after MLflow's minutes of HTTP retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        ids = tracking.ensure_store(tracking.tracking_uri(), args.experiments)
        log.info("MLflow store %s ready: %s", tracking.tracking_uri(), ids)
    # No URI and no ids in the marker: it is a dependency of every tracked job (DVC hashes it), and
    # where the runs go must not decide whether results are out of date.
    write_json(args.out, {"enabled": not args.disabled, "experiments": sorted(args.experiments)})


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from pipeline_src.dvc_yaml import check_dvc_yaml, write_dvc_yaml

    if args.check:
        check_dvc_yaml(args.params, args.out, args.stamp)
    else:
        write_dvc_yaml(args.params, args.out)
        log.info("wrote %s from %s", args.out, args.params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline_src", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("validate", help="check parameter files (merged in order) and exit")
    p.add_argument("params", nargs="+", help="params.yaml, then any overlays (configs/*.yaml)")
    p.add_argument("--show", action="store_true", help="print the resolved parameters with defaults")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("prepare", help="generate/load raw images, subsample, split, store uint8 tensors")
    add_dataclass_arguments(p, DatasetSpec)
    p.add_argument("--out_dir", required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train one classifier (L = L_c + lambda_n L_n + lambda_a L_a)")
    add_dataclass_arguments(p, TrainConfig)
    for name in ("train", "test", "out", "metrics"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--checkpoint", default=None, help="per-epoch checkpoint (default: OUT.ckpt)")
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("attack", help="craft one adversarial test set on the surrogate")
    add_dataclass_arguments(p, AttackConfig)
    for name in ("name", "surrogate", "test", "out", "metrics"):
        p.add_argument(f"--{name}", required=True)
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("evaluate", help="accuracy of one model on clean and adversarial test sets")
    for name in ("model", "test", "out", "dataset"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--adversarial", nargs="*", type=_kv_path, default=[], metavar="NAME=PATH")
    p.add_argument("--batch_size", type=int, default=256)
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tables", help="join evaluations into one paper-shaped table")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation JSONs, one per row, in row order")
    p.add_argument("--columns", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--paper", default=None)
    p.add_argument("--vs_paper", default=None)
    p.add_argument("--whitebox", action="store_true", help="the rows are white-box records (`whitebox` stage)")
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("stats", help="95%% Wilson intervals and McNemar tests against the NA row, long CSV")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation JSONs (several seeds of a row allowed)")
    p.add_argument("--columns", nargs="+", required=True)
    p.add_argument("--fields", nargs="+", default=["lambda_n", "lambda_a"], help="JSON fields that identify a row")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("figures", help="a table's figures: accuracy vs eps, ablations, training, vs paper, "
                                       "reconstructions")
    for name in ("table", "dataset", "stats", "vs_paper", "test", "prefix"):
        p.add_argument(f"--{name}", required=True)
    for name in ("train_metrics", "attack_metrics", "models"):
        p.add_argument(f"--{name}", nargs="*", default=[])
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("attack-figure", help="clean / adversarial / amplified perturbation images per attack")
    for name in ("dataset", "test", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--adversarial", nargs="+", type=_kv_path, required=True, metavar="NAME=PATH")
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_attack_figure)

    p = sub.add_parser("summary", help="where the results are, and how to open the MLflow UI")
    p.add_argument("--root", default=".", help="the workflow's working directory")
    p.set_defaults(func=cmd_summary)
    p = sub.add_parser("whitebox", help="attack one model through its own logits (beyond the paper)")
    add_dataclass_arguments(p, WhiteboxConfig)
    for name in ("model", "test", "out", "dataset"):
        p.add_argument(f"--{name}", required=True)
    _add_tracking_flag(p)
    p.set_defaults(func=cmd_whitebox)

    p = sub.add_parser("tracking-init", help="create the MLflow database and experiments before parallel jobs")
    p.add_argument("--experiments", nargs="+", required=True, help="one per dataset")
    p.add_argument("--out", required=True, help="marker file the tracked jobs depend on")
    p.add_argument("--disabled", action="store_true",
                   help="tracking is off (params: tracking.enabled false): only write the marker")
    p.set_defaults(func=cmd_tracking_init)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the plan of a parameter file")
    p.add_argument("--params", default="params.yaml", help="the parameter file DVC tracks (default params.yaml)")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="fail if OUT differs from what PARAMS generates")
    p.add_argument("--stamp", default=None, help="with --check: file written when OUT is up to date")
    p.set_defaults(func=cmd_dvc_yaml)

    from pipeline_src.denoisers_cli import add_parsers  # Table 4: train-denoiser, evaluate-denoised, combined-table

    add_parsers(sub, _kv_path, _add_tracking_flag)
    return parser


def _add_tracking_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking", action="store_true",
                        help="log an MLflow run (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db); "
                             "the experiment is the dataset")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except (ParamsError, ValueError, FileNotFoundError, tracking.TrackingError) as exc:
        log.debug("details", exc_info=True)
        log.error("%s", exc)
        return 2
    return 0
