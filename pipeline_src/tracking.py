"""MLflow tracking that no job waits for: jobs write records, one flusher logs them as runs.

A tracked job writes one JSON record into the spool of its run directory (``.tracking/spool/``): its
parameters, tags, metrics with their steps, start and end times, the sha256 of every file it wrote, and
the sha256 of the files it read that another job wrote (its *links*). Its artifacts are hard-linked into the
spool beside the record (a rerun replaces a file by rename, so the link keeps the bytes the record
describes). No job imports mlflow.

``flush`` turns records into MLflow runs, oldest first:
- under Snakemake a background flusher (``python -m pipeline_src tracking flush --watch``), started by the
  Snakefile's ``onstart``, logs records as they appear and is told to finish by ``onsuccess``/``onerror``;
  one parent run per workflow invocation holds that invocation's job runs as children;
- anywhere else (a DVC stage, a job run by hand) the job flushes the spool itself when it ends;
- records a killed workflow left behind are logged by the next flush (or ``python -m pipeline_src tracking
  flush``).

Where runs go: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db`` with root the repository
(``DVC_ROOT``: DVC sets it to the repository also for queued experiments in temporary workspaces) or the
folder Snakemake was started in (``PIPELINE_ROOT``, set by the Snakefile). One experiment per project and
run name: ``<tracking.project>/<run>``; the dataset is a tag.

Links are exact: every run carries ``output.<role>.sha256`` tags, and a run that read a file carries the
id of the run that wrote those very bytes (``train_run_id``, ``attack_run_id.<attack>``,
``row_run_id.<label>``, ...; the newest such run when reruns wrote identical bytes).

Parallel safety: one flusher per run directory (a lock on the spool); a missing SQLite database is built
under a temporary name and linked into place, so no reader ever sees a half-migrated schema.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline_src.forkserver import pid_alive
from pipeline_src.redact import redact_text, redact_uri

# Tracking never changes a job's outputs: editing this module re-runs no job (pipeline_src/codedeps.py).
AFFECTS_OUTPUTS = False

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
SPOOL = Path(".tracking") / "spool"
DEFERRED_ENV = "PIPELINE_TRACKING_DEFERRED"  # set by the Snakefile while its flusher runs
INVOCATION_ENV = "PIPELINE_INVOCATION"       # one workflow invocation: the parent run's key
ROOT_ENV = "PIPELINE_ROOT"                   # where the default store lives (the folder Snakemake started in)
PACKAGE_DIR = Path(__file__).resolve().parent
_FIX = ("start the server, or unset MLFLOW_TRACKING_URI to use the default sqlite store, "
        "or turn tracking off with 'tracking: {enabled: false}' in params.yaml")


class TrackingError(RuntimeError):
    """The tracking store cannot be used: the message names the URI and the fix."""


# --------------------------------------------------------------------------- the store

def tracking_uri() -> str:
    """The store of this process: MLFLOW_TRACKING_URI, else the repository's (or run root's) mlflow.db."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = os.environ.get("DVC_ROOT") or os.environ.get(ROOT_ENV)
    return f"sqlite:///{Path(root).resolve() / DEFAULT_DB}" if root else f"sqlite:///{DEFAULT_DB}"


def redact(uri: str) -> str:
    """The URI as it may be shown or logged (pipeline_src/redact.py: passwords and tokens replaced)."""
    return redact_uri(uri)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///") or rest in ("///", "///:memory:"):
        raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is not a database file every job can open; "
                            f"use sqlite:///<file>.db (relative) or sqlite:////<absolute path>.db")
    return Path(rest[3:].split("?", 1)[0])


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Cheap check before any job runs (no mlflow import): the server answers, or the database's folder exists."""
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent.resolve()
        if not folder.is_dir():
            raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is unreachable: folder {folder} does not exist; "
                                f"create it, or unset MLFLOW_TRACKING_URI to use the default sqlite store")
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is unreachable: folder {folder} is not writable")
        return
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
        except OSError as exc:
            raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is unreachable ({redact_text(exc)}); {_FIX}") from None


def _client(uri: str):
    # MLflow prints every run's URL to stdout when it ends, credentials of the URI included (and reads the run
    # back to do it): not here. Our own lines name the store redacted.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
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
            log.debug("another process created %s first", db)
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
        raise TrackingError(f"MLflow tracking URI {redact(uri)!r} cannot be used: {redact_text(exc)}; {_FIX}") from None


def experiment_name(project: str, run: str) -> str:
    return f"{project}/{run}"


def git_state(repo: Path = PACKAGE_DIR.parent) -> dict[str, str]:
    """Commit and dirty flag of the code that ran; 'unknown' outside a git checkout or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(status.strip())).lower(),
            "mlflow.source.git.commit": commit}  # the tag the MLflow UI shows


# --------------------------------------------------------------------------- jobs: records

def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_key(key: str) -> str:
    """An MLflow tag or metric key: letters, digits and _ - . / and space; anything else (a row label's *
    or +) becomes _."""
    return re.sub(r"[^\w\-. /]", "_", key)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Record:
    """What one job reports; ``flush`` turns it into an MLflow run."""
    stage: str
    name: str
    experiment: str
    run_name: str
    invocation: str = ""
    start_ms: int = field(default_factory=_now_ms)
    end_ms: int = 0
    status: str = "RUNNING"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, time ms
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # file in the record's folder, artifact path
    outputs: dict[str, str] = field(default_factory=dict)  # role -> sha256
    links: dict[str, str] = field(default_factory=dict)    # tag -> sha256 of a file another job wrote
    model: dict[str, Any] = field(default_factory=dict)    # a classifier to log as an MLflow model (log_model)


class Recorder:
    """The job side: collect, then write the record (``enabled`` False: every call is a no-op)."""

    def __init__(self, record: Record | None, folder: Path | None) -> None:
        self.record, self.folder = record, folder

    @property
    def active(self) -> bool:
        return self.record is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.active:
            # MLflow caps a value at 6000 characters; ours are short, str() is their canonical form
            self.record.params.update({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            self.record.tags.update({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numeric entries only (booleans and strings in a metrics dict are not metrics)."""
        if self.active:
            now = _now_ms()
            self.record.metrics += [(safe_key(k), float(v), int(step), now) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """One epoch of a training history (step = epoch)."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        self.record.artifacts.append((self._keep(path, f"{len(self.record.artifacts)}"), artifact_path or ""))

    def log_dict(self, obj: dict, name: str) -> None:
        if not self.active:
            return
        target = self.folder / f"{len(self.record.artifacts)}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        self.record.artifacts.append((target.relative_to(self.folder).as_posix(), ""))

    def log_model(self, checkpoint: str | Path, splits: Mapping[str, str | Path]) -> None:
        """Have the flusher log the classifier in ``checkpoint`` as an MLflow model (``mlflow_models``, pt2) and
        each of ``splits`` ({context: prepared split}) as a dataset input: seconds of export per model, so off
        the job's critical path. Hard links keep the bytes this job saw, as ``log_artifact`` does."""
        if not self.active:
            return
        entry: dict[str, Any] = {"checkpoint": self._keep(checkpoint, "model"), "splits": {}}
        for context, path in splits.items():
            entry["splits"][context] = {"file": self._keep(path, f"split-{context}"), "source": str(path)}
        self.record.model = entry

    def _keep(self, path: str | Path, subfolder: str) -> str:
        """``path`` hard-linked into the record's ``subfolder``; its path relative to the record."""
        path = Path(path)
        target = self.folder / subfolder / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)  # no copy: a rerun renames a new file into place, this keeps the old bytes
        except OSError:
            shutil.copy2(path, target)
        return target.relative_to(self.folder).as_posix()

    def output(self, role: str, path: str | Path) -> None:
        """A file this job wrote: its hash lets later runs link to this one exactly."""
        if self.active:
            self.record.outputs[role] = sha256_file(path)

    def link(self, tag: str, path: str | Path) -> None:
        """A file this job read that another job wrote: ``tag`` will hold that job's run id."""
        if self.active:
            self.record.links[safe_key(tag)] = sha256_file(path)


def _spool(root: Path | None = None) -> Path:
    return (root or Path.cwd()) / SPOOL


@contextlib.contextmanager
def job_run(enabled: bool, stage: str, name: str, experiment: str, tags: Mapping[str, Any] | None = None,
            params: Mapping[str, Any] | None = None, run_name: str | None = None) -> Iterator[Recorder]:
    """Record one job; on exit write the record (FINISHED, or FAILED on an exception), then flush it
    unless the workflow's flusher will (``PIPELINE_TRACKING_DEFERRED``)."""
    if not enabled:
        yield Recorder(None, None)
        return
    spool = _spool()
    folder = Path(tempfile.mkdtemp(prefix=f".{stage}.", dir=_ensure(spool)))
    record = Record(stage=stage, name=name, experiment=experiment, run_name=run_name or f"{stage}/{name}",
                    invocation=os.environ.get(INVOCATION_ENV, ""))
    recorder = Recorder(record, folder)
    recorder.set_tags({"stage": stage, **(tags or {})})
    recorder.log_params(params or {})
    try:
        yield recorder
        record.status = "FINISHED"
    except BaseException:
        record.status = "FAILED"
        raise
    finally:
        record.end_ms = _now_ms()
        _write_record(folder, record)
    if not os.environ.get(DEFERRED_ENV):
        try:
            flush(spool)
        except TrackingError as err:  # the job's results stand; its record waits for the next flush
            log.warning("%s", err)


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_record(folder: Path, record: Record) -> None:
    """record.json last, by rename: a folder without one is a job still running (or killed mid-way)."""
    tmp = folder / ".record.json.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=1, sort_keys=True))
    os.replace(tmp, folder / "record.json")


# --------------------------------------------------------------------------- the flusher

@dataclass
class _Flusher:
    """One store connection, its experiments, parents and output index, reused across polls."""
    uri: str
    client: Any = None
    experiments: dict[str, str] = field(default_factory=dict)
    index: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)  # exp -> sha -> (start, run id)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # (exp, invocation) -> run id
    git: dict[str, str] = field(default_factory=dict)

    def connect(self, experiments: list[str]) -> None:
        missing = [e for e in experiments if e not in self.experiments]
        if missing:
            self.experiments.update(ensure_store(self.uri, missing))
        if self.client is None:
            self.client = _client(self.uri)
            self.git = git_state()

    def _index(self, exp: str) -> dict[str, tuple[int, str]]:
        """sha256 of every file a run of ``exp`` wrote -> (start time, run id) of the newest such run."""
        if exp not in self.index:
            found: dict[str, tuple[int, str]] = {}
            token = None
            while True:
                page = self.client.search_runs([self.experiments[exp]], max_results=1000, page_token=token)
                for run in page:
                    for key, sha in run.data.tags.items():
                        if key.startswith("output.") and key.endswith(".sha256"):
                            start = run.info.start_time or 0
                            if found.get(sha, (-1, ""))[0] < start:
                                found[sha] = (start, run.info.run_id)
                token = page.token
                if not token:
                    break
            self.index[exp] = found
        return self.index[exp]

    def parent(self, exp: str, invocation: str) -> str | None:
        """The invocation's parent run (found by its tag, created on first use)."""
        if not invocation:
            return None
        key = (exp, invocation)
        if key not in self.parents:
            exp_id = self.experiments[exp]
            found = self.client.search_runs([exp_id], filter_string=f"tags.`pipeline.invocation` = '{invocation}' "
                                            "and tags.`pipeline.parent` = 'true'", max_results=1)
            if found:
                self.parents[key] = found[0].info.run_id
            else:
                run = self.client.create_run(exp_id, run_name=f"workflow {invocation}",
                                             tags={**self.git, "pipeline.invocation": invocation,
                                                   "pipeline.parent": "true"})
                self.parents[key] = run.info.run_id
        return self.parents[key]

    def log(self, folder: Path) -> None:
        from mlflow.entities import Metric, Param, RunTag

        data = json.loads((folder / "record.json").read_text())
        rec = Record(**{k: v for k, v in data.items()})
        self.connect([rec.experiment])
        exp_id = self.experiments[rec.experiment]
        index = self._index(rec.experiment)
        tags = {**self.git, **rec.tags, "pipeline.invocation": rec.invocation or "none"}
        tags |= {f"output.{role}.sha256": sha for role, sha in rec.outputs.items()}
        tags |= {tag: index.get(sha, (0, "unknown"))[1] for tag, sha in rec.links.items()}
        parent = self.parent(rec.experiment, rec.invocation)
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(exp_id, start_time=rec.start_ms, run_name=rec.run_name)
        run_id = run.info.run_id
        # one batch per kind (MLflow caps a batch at 1000 metrics, 100 params, 100 tags)
        params = [Param(k, v) for k, v in rec.params.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])
        tag_list = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(tag_list), 100):
            self.client.log_batch(run_id, tags=tag_list[i:i + 100])
        metrics = [Metric(k, v, ts, step) for k, v, step, ts in rec.metrics]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
        for rel, artifact_path in rec.artifacts:
            self.client.log_artifact(run_id, str(folder / rel), artifact_path or None)
        if rec.model:
            self._log_model(run_id, folder, rec.model, rec.tags.get("dataset", "data"))
        self.client.set_terminated(run_id, rec.status if rec.status != "RUNNING" else "FAILED", end_time=rec.end_ms)
        for sha in rec.outputs.values():
            index[sha] = (rec.start_ms, run_id)

    def _log_model(self, run_id: str, folder: Path, model: Mapping[str, Any], dataset: str) -> None:
        """The run's classifier as an MLflow model and its splits as inputs. A failure here is reported and
        tagged, never fatal: the run, its metrics and its checkpoint artifact are already logged."""
        from pipeline_src.mlflow_models import log_classifier, log_split

        uri = self.client.tracking_uri
        try:
            from pipeline_src.checkpoints import load_checkpoint

            checkpoint = folder / model["checkpoint"]
            loaded = load_checkpoint(checkpoint)
            spec = loaded.model.spec  # the ModelSpec it was rebuilt from: channels and size of its input
            logged = log_classifier(loaded.model, run_id=run_id, tracking_uri=uri, channels=spec.in_channels,
                                    image_size=spec.image_size, classes=loaded.classes, checkpoint=checkpoint)
            self.client.set_tag(run_id, "model_uri", logged.model_uri)
            for context, split in model.get("splits", {}).items():
                log_split(folder / split["file"], run_id=run_id, tracking_uri=uri, context=context,
                          name=f"{dataset}/{context}", source=split["source"])
        except Exception as err:  # noqa: BLE001 - any export or store error: keep the run, say why
            log.warning("run %s: its classifier was not logged as an MLflow model: %s", run_id, err)
            self.client.set_tag(run_id, "model_logging_error", str(err)[:500])

    def finish(self, invocation: str, status: str) -> None:
        """Close the invocation's parent runs (every experiment it logged to)."""
        for (exp, inv), run_id in self.parents.items():
            if inv == invocation:
                self.client.set_terminated(run_id, status)


def pending(spool: Path) -> list[Path]:
    """Finished records, oldest first (a folder without record.json is a job still running)."""
    folders = [p.parent for p in spool.glob("*/record.json")] if spool.is_dir() else []
    return sorted(folders, key=lambda f: (f / "record.json").stat().st_mtime_ns)


@contextlib.contextmanager
def _spool_lock(spool: Path) -> Iterator[None]:
    with open(_ensure(spool) / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def flush(spool: Path | None = None, uri: str | None = None, flusher: _Flusher | None = None) -> int:
    """Log every finished record of ``spool`` as an MLflow run, then delete it; return how many."""
    spool = spool or _spool()
    folders = pending(spool)
    if not folders:
        return 0
    flusher = flusher or _Flusher(uri or tracking_uri())
    done = 0
    with _spool_lock(spool):
        for folder in pending(spool):
            try:
                flusher.log(folder)
            except TrackingError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the record for the next flush, name the store
                raise TrackingError(f"MLflow tracking URI {redact(flusher.uri)!r} cannot be used: {redact_text(exc)}; the "
                                    f"records stay in {spool} (`python -m pipeline_src tracking flush` logs "
                                    f"them later); {_FIX}") from None
            shutil.rmtree(folder)
            done += 1
    log.info("logged %d run(s) to %s", done, redact(flusher.uri))
    return done


def watch(spool: Path, stop_file: Path, uri: str | None = None, poll: float = 1.0,
          parent_pid: int | None = None) -> int:
    """Flush as records appear until ``stop_file`` exists (its text: the invocation's final status), or until
    ``parent_pid`` (the workflow) is gone: then the invocation counts as FAILED."""
    flusher = _Flusher(uri or tracking_uri())
    total, status = 0, "FINISHED"
    while True:
        stopping = stop_file.exists()
        orphaned = parent_pid is not None and not pid_alive(parent_pid)
        total += flush(spool, flusher=flusher)
        if stopping or orphaned:
            status = (stop_file.read_text().strip() if stopping else "") or ("FAILED" if orphaned else "FINISHED")
            break
        time.sleep(poll)
    invocation = os.environ.get(INVOCATION_ENV, "")
    if invocation and flusher.client is not None:
        flusher.finish(invocation, status)
    return total


