"""MLflow tracking: one run per training, attack generation, evaluation and table.

Where runs go: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the working directory
(MLflow 3's own default, so ``mlflow ui`` started in the repository root shows them). One experiment
per dataset. Runs are linked by tags: every run has ``stage`` and ``dataset``; training runs ``model``;
attack runs ``attack`` and ``surrogate``; evaluation runs ``model``, ``train_run_id`` and
``attack_run_id.<attack>``; table runs ``table`` and ``models``. So a table row (a model name) leads
to its evaluation run, and from there to its training and attack runs.

Parallel safety: the workflow's first step (``tracking-init``) creates the database and every
experiment before any parallel job starts. ``ensure_store`` is also safe to race: a missing SQLite
database is built under a temporary name and linked into place atomically, so no job ever sees a
half-migrated schema, and a lost experiment-creation race is resolved by reading the winner's.

``mlflow`` is imported inside functions only: stages run without tracking never pay its import.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline_src.redact import redact_text, redact_uri

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
PACKAGE_DIR = Path(__file__).resolve().parent
_FIX = ("start the server, or unset MLFLOW_TRACKING_URI to use the default sqlite:///mlflow.db, "
        "or turn tracking off with 'tracking: {enabled: false}' in params.yaml")


class TrackingError(RuntimeError):
    """The tracking store cannot be used: the message names the URI and the fix."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///") or rest in ("///", "///:memory:"):
        raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} is not a database file every job can open; "
                            f"use sqlite:///<file>.db (relative) or sqlite:////<absolute path>.db")
    return Path(rest[3:].split("?", 1)[0])


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Cheap check before any job runs (no mlflow import): the server answers, or the database's folder exists.

    Other schemes (databricks, postgresql, ...) are checked by ``ensure_store`` in the first step.
    """
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent.resolve()
        if not folder.is_dir():
            raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} is unreachable: folder {folder} does not exist; "
                                f"create it, or unset MLFLOW_TRACKING_URI to use the default sqlite:///mlflow.db")
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} is unreachable: folder {folder} is not writable")
        return
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
        except OSError as exc:
            raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} is unreachable ({redact_text(exc)}); {_FIX}") from None


# --------------------------------------------------------------------------- store and experiments

def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _build_sqlite(db: Path, experiments: list[str]) -> None:
    """Create a fresh database with every experiment under a temporary name, then link it into place.

    ``os.link`` fails if the target exists, so of two racing builders exactly one wins and the other
    discards its copy; nobody ever opens a database whose migrations are still running.
    """
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH  # "./mlruns", as MlflowClient uses
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    os.close(fd)
    os.unlink(tmp)  # SQLite creates the file itself
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        for name in experiments:
            store.create_experiment(name)
        store.engine.dispose()
        try:
            os.link(tmp, db)
            log.info("created MLflow database %s with experiments %s", db, ", ".join(experiments))
        except FileExistsError:
            log.debug("another job created %s first", db)
    finally:
        Path(tmp).unlink(missing_ok=True)


def experiment_id(client: Any, name: str) -> str:
    """The experiment's id, created if missing; a lost creation race reads the winner's."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def ensure_store(uri: str, experiments: list[str]) -> dict[str, str]:
    """Create the database (migrations included) and the experiments; return {name: id}. Idempotent."""
    check_reachable(uri)
    db = sqlite_path(uri)
    try:
        if db is not None and not db.exists():
            _build_sqlite(db, experiments)
        client = _client(uri)
        return {name: experiment_id(client, name) for name in experiments}
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure is one user-facing message
        raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} cannot be used: {redact_text(exc)}; {_FIX}") from None


# --------------------------------------------------------------------------- runs

def git_state(repo: Path = PACKAGE_DIR.parent) -> dict[str, str]:
    """Commit and dirty flag of the code that ran; 'unknown' outside a git checkout or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(status.strip())).lower(),
            "mlflow.source.git.commit": commit}  # the tag the MLflow UI shows


@dataclass
class Run:
    """An open MLflow run, or a no-op stand-in when tracking is off (``client`` None)."""
    client: Any = None
    run_id: str | None = None
    experiment_id: str | None = None
    _step_metrics: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.client is not None

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numeric entries only (booleans and strings in a metrics dict are not metrics)."""
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)  # one write per call: short DB locks

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """One epoch of ``train.train_model``'s history, logged as it happens (step = epoch)."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.active and tags:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj: dict, name: str) -> None:
        if self.active:
            self.client.log_dict(self.run_id, obj, name)

    def find(self, **tags: str) -> str | None:
        """Id of the newest finished run in this experiment carrying all ``tags``."""
        if not self.active:
            return None
        return find_run(self.client, self.experiment_id, **tags)


def find_run(client: Any, experiment: str, **tags: str) -> str | None:
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()] + ["attributes.status = 'FINISHED'"]
    runs = client.search_runs([experiment], filter_string=" and ".join(clauses),
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


@contextlib.contextmanager
def start_run(enabled: bool, experiment: str, name: str, tags: Mapping[str, str],
              params: Mapping[str, Any] | None = None) -> Iterator[Run]:
    """Open a run (FINISHED on success, FAILED on an exception); a no-op ``Run`` when not ``enabled``.

    The run is created before the stage's work starts, so a store that fails shows up at once.
    """
    if not enabled:
        yield Run()
        return
    from mlflow.entities import Param, RunStatus

    uri = tracking_uri()
    try:
        client = _client(uri)
        exp_id = ensure_store(uri, [experiment])[experiment]
        run = client.create_run(exp_id, run_name=name, tags={**git_state(), **tags})
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow tracking URI {redact_uri(uri)!r} cannot be used: {redact_text(exc)}; {_FIX}") from None
    run_id = run.info.run_id
    if params:
        # MLflow caps a param value at 6000 characters; ours are short, str() is their canonical form
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    log.info("MLflow run %s (%s) in experiment %s at %s", run_id, name, experiment, redact_uri(uri))
    try:
        yield Run(client=client, run_id=run_id, experiment_id=exp_id)
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
