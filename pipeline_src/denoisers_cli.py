"""CLI stages of Table 4 (registered by ``cli.build_parser``): train-denoiser, evaluate-denoised, combined-table."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from pipeline_src import tracking
from pipeline_src.combined import DenoiserConfig
from pipeline_src.config import add_dataclass_arguments, from_namespace


def cmd_train_denoiser(args: argparse.Namespace) -> None:
    from pipeline_src.cli import _read_json
    from pipeline_src.data.prepare import load_split
    from pipeline_src.denoisers import train_denoiser
    from pipeline_src.io import write_json

    cfg = from_namespace(DenoiserConfig, args)
    if (cfg.kind == "hgd") != (args.classifier is not None):
        raise ValueError("--classifier (the protected classifier) is required for kind hgd and not allowed for "
                         "kind reformer")
    name, data_dir = Path(args.out).stem, Path(args.train).parent
    summary = _read_json(data_dir / "summary.json")
    protects = Path(args.classifier).stem if args.classifier else ""
    # its own stage: searches for classifier trainings (stage "train") never meet a denoiser
    tags = {"stage": "train_denoiser", "model": name, "dataset": data_dir.name, "denoiser": cfg.kind,
            "protects": protects, "data_sha256_train": summary.get("train", {}).get("sha256", "unknown")}
    with tracking.start_run(args.tracking, data_dir.name, name, tags, dataclasses.asdict(cfg)) as run:
        if protects:
            run.set_tags({"classifier_run_id": run.find(stage="train", model=protects) or "unknown"})
        history = train_denoiser(cfg, load_split(args.train), load_split(args.test), args.out, args.classifier,
                                 on_epoch=run.log_epoch)
        record = {"config": dataclasses.asdict(cfg), "protects": protects or None, "history": history}
        write_json(args.metrics, record)
        run.log_artifact(args.out, "checkpoint")
        run.log_dict({"model": name, "dataset": data_dir.name, **record}, "resolved_config.json")


def cmd_evaluate_denoised(args: argparse.Namespace) -> None:
    """Several combinations in one process (one job per combined table: a job's start-up, not the
    evaluation, is the cost); one JSON and one MLflow run per combination all the same."""
    from pipeline_src.denoisers import evaluate_denoised
    from pipeline_src.io import write_json

    if not len(args.denoisers) == len(args.models) == len(args.outs):
        raise ValueError(f"{len(args.denoisers)} --denoisers, {len(args.models)} --models and {len(args.outs)} --outs: "
                         "give one of each per combination")
    adversarial = dict(args.adversarial)
    for denoiser_path, model_path, out in zip(args.denoisers, args.models, args.outs):
        model, denoiser = Path(model_path).stem, Path(denoiser_path).stem
        combination = f"{denoiser}/{model}"
        tags = {"stage": "evaluate_denoised", "model": model, "denoiser": denoiser, "combination": combination,
                "dataset": args.dataset}
        params = {"model": model, "denoiser": denoiser, "batch_size": args.batch_size,
                  "attacks": ",".join(adversarial)}
        with tracking.start_run(args.tracking, args.dataset, f"eval/{combination}", tags, params) as run:
            run.set_tags({"train_run_id": run.find(stage="train", model=model) or "unknown",
                          "denoiser_run_id": run.find(stage="train_denoiser", model=denoiser) or "unknown",
                          **{f"attack_run_id.{a}": run.find(stage="attack", attack=a) or "unknown"
                             for a in adversarial}})
            result = evaluate_denoised(denoiser_path, model_path, args.test, adversarial, args.batch_size)
            write_json(out, {"model": model, "denoiser": denoiser, "dataset": args.dataset, **result})
            run.log_metrics({f"accuracy_{name}": acc for name, acc in result["accuracy"].items()})


def cmd_combined_table(args: argparse.Namespace) -> None:
    from pipeline_src.cli import _read_json
    from pipeline_src.combined import write_combined_tables

    evals = [_read_json(Path(p)) for p in args.evals]
    dataset = evals[0].get("dataset", "tables") if evals else "tables"
    table = Path(args.out).stem
    rows = [f"{label}={ev.get('denoiser', '')}/{ev.get('model', '')}" for label, ev in zip(args.labels, evals)]
    tags = {"stage": "combined_table", "table": table, "dataset": dataset, "rows": ",".join(rows)}
    with tracking.start_run(args.tracking, dataset, f"table/{table}", tags, {"columns": ",".join(args.columns)}) as run:
        run.set_tags({f"eval_run_id.row{i}": (run.find(stage="evaluate_denoised", combination=f"{ev['denoiser']}/{ev['model']}")
                                              if ev.get("denoiser") else run.find(stage="evaluate", model=ev.get("model", "")))
                      or "unknown" for i, ev in enumerate(evals)})
        write_combined_tables(args.evals, args.labels, args.columns, args.out, args.paper, args.vs_paper)
        for path in (args.out, args.vs_paper):
            if path:
                run.log_artifact(path, "tables")


def add_parsers(sub: argparse._SubParsersAction, kv_path, add_tracking_flag) -> None:
    p = sub.add_parser("train-denoiser", help="train one input denoiser of Table 4 (Reformer or HGD*)")
    add_dataclass_arguments(p, DenoiserConfig)
    for name in ("train", "test", "out", "metrics"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--classifier", default=None, help="hgd: the classifier it protects (its features guide it)")
    add_tracking_flag(p)
    p.set_defaults(func=cmd_train_denoiser)

    p = sub.add_parser("evaluate-denoised", help="accuracy of denoiser -> classifier on clean and adversarial sets")
    for name, what in (("denoisers", "denoiser files"), ("models", "classifier files, one per denoiser"),
                       ("outs", "evaluation JSONs, one per denoiser")):
        p.add_argument(f"--{name}", nargs="+", required=True, help=what)
    for name in ("test", "dataset"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--adversarial", nargs="*", type=kv_path, default=[], metavar="NAME=PATH")
    p.add_argument("--batch_size", type=int, default=256)
    add_tracking_flag(p)
    p.set_defaults(func=cmd_evaluate_denoised)

    p = sub.add_parser("combined-table", help="join evaluations into a combined-defence table (Table 4)")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation JSONs, one per row, in row order")
    p.add_argument("--labels", nargs="+", required=True, help="row labels (column defense), one per evaluation")
    p.add_argument("--columns", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--paper", default=None)
    p.add_argument("--vs_paper", default=None)
    add_tracking_flag(p)
    p.set_defaults(func=cmd_combined_table)
