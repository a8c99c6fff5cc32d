"""`summary`: what `make run` prints at the end: where the results are and how to look at them."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline_src import tracking
from pipeline_src.redact import browser_url, redact_uri

if TYPE_CHECKING:
    from pipeline_src.plan import Plan

UI_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"  # no background job runner: one process, not ~16


def mlflow_ui_command(uri: str, port: int = 5000) -> str:
    """How to look at the runs, never showing a password.

    A local store (sqlite, or a database URI): ``mlflow ui`` bound to localhost only (the UI has no
    authentication), one worker. A remote tracking server (http/https) already serves the UI: open its URL.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        user = urlsplit(uri).username
        login = f" (log in as {user!r})" if user and urlsplit(uri).password is not None else ""
        return f"open {browser_url(uri)} in a browser{login}: the tracking server {redact_uri(uri)} serves the UI"
    if scheme.startswith("databricks"):
        return f"runs are in the Databricks workspace of {redact_uri(uri)}: open its Experiments page"
    db = tracking.sqlite_path(uri)
    if db is not None:
        store = shlex.quote(f"sqlite:///{db.resolve()}")
    elif redact_uri(uri) != uri:  # a database URI with a password: name the variable, not its value
        store = '"$MLFLOW_TRACKING_URI"'
    else:
        store = shlex.quote(uri)
    return (f"{UI_ENV} {_mlflow_exe()} ui --backend-store-uri {store} --host 127.0.0.1 --port {port}"
            f" --workers 1   # then open http://127.0.0.1:{port}")


def _mlflow_exe() -> str:
    """The mlflow next to this interpreter (the venv's, which a user's shell may not have on PATH)."""
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.is_file():
        return "mlflow"
    rel = os.path.relpath(exe)
    return rel if not rel.startswith("..") else str(exe)


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def _plan(root: Path) -> Plan:
    """The run's plan from its params.yaml (ParamsError or OSError when there is none to read)."""
    from pipeline_src.config import load_params, validate_params
    from pipeline_src.plan import build_plan

    return build_plan(validate_params(load_params(root / "params.yaml")))


def _headline(root: Path) -> str:
    """The run's headline (pipeline_src/headline.py) from its params.yaml, last: what `make run` ends with."""
    from pipeline_src.config import ParamsError
    from pipeline_src.headline import headline

    try:
        plan = _plan(root)
    except (ParamsError, OSError):
        return ""
    return headline(plan, root)


def audit_summary(root: Path = Path(".")) -> str:
    """What `make audit` ends with: per audited table, which defended rows keep their advantage over NA under the
    strongest attack (audit_tables.summary_sentences), or which tables have no audit yet."""
    import pandas as pd

    from pipeline_src.audit_tables import summary_sentences
    from pipeline_src.config import ParamsError

    try:
        plan = _plan(root)
    except (ParamsError, OSError) as err:
        return f"no audit summary: {err}\n"
    if not plan.audit_tables:
        return "no audit: audit.enabled is false in params.yaml\n"
    tables = root / "results" / "tables"
    summaries = [tables / f"audit_{t}_summary.csv" for t in plan.audit_tables]
    present = [p for p in summaries if p.is_file()]
    missing = [p.name for p in summaries if p not in present]
    lines = ["", "Is the defence real? Each defended row against NA under the strongest attack, same images "
             f"(McNemar; {tables}/audit_<table>.csv, docs/audit.md)"]
    text = summary_sentences(pd.concat(map(pd.read_csv, present), ignore_index=True)) if present else ""
    lines += [text.rstrip("\n")] if text else []
    if missing:
        lines += [f"not audited yet: {', '.join(missing)} (`make audit`, or `snakemake --cores all audit`)"]
    return "\n".join(lines) + "\n"


def summary(root: Path = Path(".")) -> str:
    return _where(root) + (_headline(root) or "\n")


def _where(root: Path) -> str:
    tables, figures, report = root / "results" / "tables", root / "results" / "figures", root / "results" / "report.html"
    lines = ["", "Results", "-------",
             f"tables:  {tables}/  ({_count(tables, '*.csv')} CSVs: <table>.csv as in the paper, "
             "<table>_vs_paper.csv, <table>_stats.csv with 95% CIs and McNemar tests)",
             f"figures: {figures}/  ({_count(figures, '*.png')} PNGs)",
             f"report:  {report}" + ("" if report.is_file() else "  (not built: snakemake --report results/report.html)")]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / tracking.DEFAULT_DB}"
    try:
        db = tracking.sqlite_path(uri)
    except tracking.TrackingError as err:  # its message is redacted
        return "\n".join([*lines, f"MLflow:  {err}"]) + "\n"
    if db is not None and not db.is_absolute():
        db = root / db
        uri = f"sqlite:///{db}"
    if db is None or db.is_file():
        lines += ["MLflow:  " + mlflow_ui_command(uri)]
    else:
        lines += [f"MLflow:  no store at {db} (tracking off?)"]
    return "\n".join(lines) + "\n"
