"""One CLI for every stage: ``python -m pipeline_src <stage> ...``.

Snakemake (and DVC) call these with explicit arguments; paths are always passed in, never repeated
here. Each stage's arguments mirror the dataclass it fills (``config.to_cli_args``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from pipeline_src.config import (AttackConfig, DatasetSpec, ParamsError, TrainConfig, add_dataclass_arguments,
                                 from_namespace, load_params, validate_params)

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


def cmd_train(args: argparse.Namespace) -> None:
    from pipeline_src.data.prepare import load_split
    from pipeline_src.io import write_json
    from pipeline_src.train import train_model

    cfg = from_namespace(TrainConfig, args)
    history = train_model(cfg, load_split(args.train), load_split(args.test), args.out, args.checkpoint)
    write_json(args.metrics, {"config": dataclasses.asdict(cfg), "history": history})


def cmd_attack(args: argparse.Namespace) -> None:
    from pipeline_src.adversarial import craft
    from pipeline_src.io import write_json

    cfg = from_namespace(AttackConfig, args)
    metrics = craft(cfg, args.surrogate, args.test, args.out)
    write_json(args.metrics, {"attack": args.name, "config": dataclasses.asdict(cfg), **metrics})


def cmd_evaluate(args: argparse.Namespace) -> None:
    from pipeline_src.evaluate import evaluate_model
    from pipeline_src.io import write_json

    result = evaluate_model(args.model, args.test, dict(args.adversarial), args.batch_size)
    write_json(args.out, {"model": Path(args.model).stem, "dataset": args.dataset, **result})


def cmd_tables(args: argparse.Namespace) -> None:
    from pipeline_src.tables import write_tables

    write_tables(args.evals, args.columns, args.out, args.paper, args.vs_paper)


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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("attack", help="craft one adversarial test set on the surrogate")
    add_dataclass_arguments(p, AttackConfig)
    for name in ("name", "surrogate", "test", "out", "metrics"):
        p.add_argument(f"--{name}", required=True)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("evaluate", help="accuracy of one model on clean and adversarial test sets")
    for name in ("model", "test", "out", "dataset"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--adversarial", nargs="*", type=_kv_path, default=[], metavar="NAME=PATH")
    p.add_argument("--batch_size", type=int, default=256)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tables", help="join evaluations into one paper-shaped table")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation JSONs, one per row, in row order")
    p.add_argument("--columns", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--paper", default=None)
    p.add_argument("--vs_paper", default=None)
    p.set_defaults(func=cmd_tables)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except (ParamsError, ValueError, FileNotFoundError) as exc:
        log.debug("details", exc_info=True)
        log.error("%s", exc)
        return 2
    return 0
