"""What every job's entry module shares: its command line, logging, the run's parameters read by name,
one clear message for a user's error, and its tracking record."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_src.config import ParamsError, load_params, validate_params
from pipeline_src.plan import Plan, build_plan, structure_hash

PARAMS = "params.yaml"  # in the job's working directory: the run's parameters (README, "Runs")
log = logging.getLogger("pipeline_src")


@dataclass(frozen=True)
class Job:
    """A parsed command line with the run's parameters: ``cfg`` validated (defaults filled), ``plan`` its jobs."""
    args: argparse.Namespace
    cfg: dict
    plan: Plan

    def view(self, keys: Iterable[str]) -> dict:
        """Only ``keys`` of the parameters: a stage builds its configuration from this, so reading a key it
        did not declare fails at once instead of silently escaping Snakemake's and DVC's rerun triggers."""
        return view(self.cfg, keys)

    def track(self, stage: str, name: str, dataset: str, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, run_name: str | None = None) -> AbstractContextManager:
        """The job's MLflow record (a no-op when ``tracking.enabled`` is false). Tracking never changes a
        result, so ``tracking`` is read here without being one of the job's keys."""
        from pipeline_src import tracking

        t = self.cfg["tracking"]
        return tracking.job_run(bool(t["enabled"]), stage, name, tracking.experiment_name(t["project"], self.cfg["run"]),
                                {"dataset": dataset, "run": self.cfg["run"], **(tags or {})}, params, run_name)


def parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The stage's parser: ``--help`` shows the module docstring's first paragraph and these common options."""
    summary = doc.strip().split("\n\n")[0]
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=summary,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS, metavar="FILE",
                   help="the run's parameters (default: params.yaml in the working directory)")
    p.add_argument("--log", default=None, metavar="FILE", help="also write this job's log to FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def lookup(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg['a']['b']`` for ``'a.b'``."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ParamsError(f"parameter '{key}' is not set")
        node = node[part]
    return node


def view(cfg: Mapping[str, Any], keys: Iterable[str]) -> dict:
    out: dict = {}
    for key in keys:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = lookup(cfg, key)
    return out


def values(cfg: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """{key: value}: what a rule gives Snakemake's params trigger."""
    return {key: lookup(cfg, key) for key in keys}


def load(path: str | Path) -> tuple[dict, Plan]:
    """The run's parameters, validated, and the plan of their jobs; under DVC also the structure guard."""
    path = Path(path)
    cfg = validate_params(load_params(path), source=str(path))
    plan = build_plan(cfg)
    if os.environ.get("DVC_STAGE"):
        check_dvc_structure(plan, Path("dvc.yaml"))
    return cfg, plan


STRUCTURE_PREFIX = "# structure: "


def check_dvc_structure(plan: Plan, dvc_yaml: Path) -> None:
    """dvc.yaml is rendered for one set of datasets, models, attacks and tables: refuse to run a stage of it
    when params.yaml now describes another (a value change never needs a new dvc.yaml; a new row does)."""
    if not dvc_yaml.is_file():
        return
    with dvc_yaml.open() as fh:
        header = [line for _, line in zip(range(10), fh) if line.startswith(STRUCTURE_PREFIX)]
    if header and header[0][len(STRUCTURE_PREFIX):].strip() != structure_hash(plan):
        raise ParamsError(f"{dvc_yaml} describes other datasets, table rows, attacks or denoisers than params.yaml "
                          "has now: run `python -m pipeline_src dvc-yaml` (it re-renders the stages from the "
                          "Snakefile), then `dvc repro` again")


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log, mode="w"))
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(level)
    from pipeline_src.redact import install_log_redaction

    install_log_redaction(root)  # no password of a URI in any log line, ours or a library's


def main(module: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
         run: Callable[[Job], None], argv: list[str] | None = None) -> int:
    """Parse, read the run's parameters, run; a user's error is one logged line and exit status 2.

    Under Snakemake the job's process hands itself to the workflow's fork server, which has torch loaded
    (pipeline_src/forkserver.py); without one it runs here."""
    from pipeline_src import forkserver

    code = forkserver.delegate(module, list(sys.argv[1:] if argv is None else argv))
    if code is not None:
        return code
    p = parser(module, doc)
    add_arguments(p)
    args = p.parse_args(argv)
    _setup_logging(args)
    try:
        cfg, plan = load(args.params)
        run(Job(args, cfg, plan))
    except (ParamsError, ValueError, FileNotFoundError) as exc:
        log.debug("details", exc_info=True)
        log.error("%s", exc)
        return 2
    return 0


def pairs(items: list[str], what: str) -> dict[str, str]:
    """NAME=PATH items of the command line -> {name: path}."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{what}: expected NAME=PATH, got {item!r}")
        out[name] = path
    return out


def expect(given: Iterable[str], planned: Iterable[str], what: str) -> None:
    """The files a rule passed match the plan of the parameters (else dvc.yaml or a hand-run command is stale)."""
    given, planned = list(given), list(planned)
    if given != planned:
        raise ParamsError(f"{what}: the command gives {given}, the parameters plan {planned}; run the job through "
                          "`snakemake`, or `python -m pipeline_src dvc-yaml` then `dvc repro`")
