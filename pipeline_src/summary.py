"""`summary`: what `make run` prints at the end: where the results are and how to look at them."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from pipeline_src import tracking

UI_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"  # no background job runner: one process, not ~16


def mlflow_ui_command(uri: str, port: int = 5000) -> str:
    """`mlflow server` bound to localhost only (the UI has no authentication), one worker."""
    db = tracking.sqlite_path(uri)
    store = f"sqlite:///{db.resolve()}" if db is not None else uri
    return (f"{UI_ENV} {_mlflow_exe()} server --backend-store-uri {shlex.quote(store)} --host 127.0.0.1 --port {port}"
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


def summary(root: Path = Path(".")) -> str:
    tables, figures, report = root / "results" / "tables", root / "results" / "figures", root / "results" / "report.html"
    lines = ["", "Results", "-------",
             f"tables:  {tables}/  ({_count(tables, '*.csv')} CSVs: <table>.csv as in the paper, "
             "<table>_vs_paper.csv, <table>_stats.csv with 95% CIs and McNemar tests)",
             f"figures: {figures}/  ({_count(figures, '*.png')} PNGs)",
             f"report:  {report}" + ("" if report.is_file() else "  (not built: snakemake --report results/report.html)")]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / tracking.DEFAULT_DB}"
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_absolute():
        db = root / db
        uri = f"sqlite:///{db}"
    if db is None or db.is_file():
        lines += ["MLflow:  " + mlflow_ui_command(uri)]
    else:
        lines += [f"MLflow:  no store at {db} (tracking off?)"]
    return "\n".join(lines) + "\n"
