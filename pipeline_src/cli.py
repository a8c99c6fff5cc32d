"""Commands around the workflow (not its jobs): ``python -m pipeline_src <command>``.

The jobs themselves are one entry module per stage, ``python -m pipeline_src.stages.<stage>`` (see
pipeline_src/stages/__init__.py); editing this file re-runs none of them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pipeline_src.config import ParamsError, load_params, validate_params

log = logging.getLogger("pipeline_src")


def cmd_validate(args: argparse.Namespace) -> None:
    cfg = validate_params(load_params(*args.params), source=" + ".join(args.params))
    print(json.dumps(cfg, indent=2) if args.show else f"ok: {' + '.join(args.params)}")


def cmd_summary(args: argparse.Namespace) -> None:
    from pipeline_src.summary import audit_summary, summary

    print(audit_summary(Path(args.root)) if args.audit else summary(Path(args.root)))


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from pipeline_src.dvc_render import check_dvc_yaml, write_dvc_yaml

    if args.check:
        check_dvc_yaml(Path(args.out))
        print(f"{args.out} is up to date with the Snakefile and params.yaml")
    else:
        write_dvc_yaml(Path(args.out))
        log.info("wrote %s from the Snakefile's jobs for params.yaml", args.out)


def cmd_tracking_flush(args: argparse.Namespace) -> None:
    from pipeline_src import tracking

    spool = Path(args.spool)
    if args.watch:
        if not args.stop:
            raise ValueError("--watch needs --stop FILE (the file that tells the flusher to finish)")
        n = tracking.watch(spool, Path(args.stop), parent_pid=args.parent_pid)
    else:
        n = tracking.flush(spool)
    log.info("logged %d MLflow run(s) from %s to %s", n, spool, tracking.redact(tracking.tracking_uri()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline_src", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check parameter files (merged in order) and exit")
    p.add_argument("params", nargs="+", help="params.yaml, then any overlays (configs/*.yaml)")
    p.add_argument("--show", action="store_true", help="print the resolved parameters with defaults")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("summary", help="where the results are, and how to open the MLflow UI")
    p.add_argument("--root", default=".", help="the workflow's working directory")
    p.add_argument("--audit", action="store_true",
                   help="instead: per table, which rows keep their advantage over NA under the strongest attack "
                        "(what `make audit` ends with)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("dvc-yaml", help="render dvc.yaml from the Snakefile's jobs for params.yaml (after a change "
                                        "of tables, rows, datasets or attacks; never needed for a value)")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="fail if OUT differs from what the Snakefile renders")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("tracking", help="MLflow: log the records jobs left in the spool")
    tsub = p.add_subparsers(dest="action", required=True)
    f = tsub.add_parser("flush", help="log every finished job record of SPOOL as an MLflow run")
    f.add_argument("--spool", default=".tracking/spool", help="the run directory's spool (default .tracking/spool)")
    f.add_argument("--watch", action="store_true", help="keep logging records as they appear, until --stop exists")
    f.add_argument("--stop", default=None, help="with --watch: finish once this file exists (its text: the status)")
    f.add_argument("--parent-pid", type=int, default=None, help="with --watch: finish when this process is gone")
    f.set_defaults(func=cmd_tracking_flush)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from pipeline_src.redact import install_log_redaction

    install_log_redaction()
    from pipeline_src.tracking import TrackingError

    try:
        args.func(args)
    except (ParamsError, ValueError, FileNotFoundError, TrackingError) as exc:
        log.debug("details", exc_info=True)
        log.error("%s", exc)
        return 2
    return 0
