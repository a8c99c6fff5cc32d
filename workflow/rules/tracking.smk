# The workflow's start and end: MLflow tracking (pipeline_src/tracking.py, docs/tracking.md), then the headline
# (pipeline_src/headline.py). Jobs never talk to the store: each writes a record into .tracking/spool/ of the
# run's directory, and one background flusher, started when the workflow starts and stopped when it ends, logs
# them as runs, children of one parent run per invocation. A store that cannot be reached stops the workflow
# before any job runs.
import datetime as _dt
import subprocess as _subprocess

from pipeline_src import tracking as _tracking

TRACKING = CFG["tracking"]["enabled"]
os.environ[_tracking.ROOT_ENV] = str(ROOT)  # the default store: <where Snakemake started>/mlflow.db

if TRACKING:
    try:
        _tracking.check_reachable(_tracking.tracking_uri())  # a socket or a folder: no mlflow import here
    except _tracking.TrackingError as err:
        raise WorkflowError(str(err)) from None

_FLUSHER = {}
_FORKSERVER = {}


def _start_forkserver():
    """Local runs: one process with torch loaded forks every job (pipeline_src/forkserver.py); jobs of a
    cluster executor, on other machines, start as before."""
    if not workflow.local_exec:
        return
    import tempfile

    folder = tempfile.mkdtemp(prefix="pipeline-fork-")  # a short path: a Unix socket's is at most 107 bytes
    sock = os.path.join(folder, "jobs.sock")
    Path("logs").mkdir(exist_ok=True)
    log_file = open(Path("logs") / "forkserver.log", "a")
    _FORKSERVER.update(folder=folder, log=log_file, process=_subprocess.Popen(
        [sys.executable, "-m", "pipeline_src.forkserver", "--socket", sock, "--parent-pid", str(os.getpid())],
        stdout=log_file, stderr=_subprocess.STDOUT))
    from pipeline_src.forkserver import PID_ENV, SOCKET_ENV

    os.environ[SOCKET_ENV] = sock
    os.environ[PID_ENV] = str(_FORKSERVER["process"].pid)  # the first jobs wait for it while it loads


def _stop_forkserver():
    process = _FORKSERVER.get("process")
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=60)
    except _subprocess.TimeoutExpired:
        process.kill()
    _FORKSERVER["log"].close()
    import shutil

    shutil.rmtree(_FORKSERVER["folder"], ignore_errors=True)


onstart:
    _start_forkserver()
    if TRACKING:
        invocation = f"{RUN}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}"
        os.environ[_tracking.INVOCATION_ENV] = invocation
        os.environ[_tracking.DEFERRED_ENV] = "1"  # jobs leave their records to the flusher
        spool = Path.cwd() / _tracking.SPOOL
        spool.mkdir(parents=True, exist_ok=True)
        stop = spool.parent / f"stop-{invocation}"
        Path("logs").mkdir(exist_ok=True)
        log_file = open(Path("logs") / "tracking_flush.log", "a")
        _FLUSHER.update(stop=stop, log=log_file, process=_subprocess.Popen(
            [sys.executable, "-m", "pipeline_src", "tracking", "flush", "--watch", "--stop", str(stop),
             "--parent-pid", str(os.getpid())], stdout=log_file, stderr=_subprocess.STDOUT))


def _stop_flusher(status):
    process = _FLUSHER.get("process")
    if process is None:
        return
    _FLUSHER["stop"].write_text(status)
    try:
        code = process.wait(timeout=600)
    except _subprocess.TimeoutExpired:
        process.kill()
        code = -1
    _FLUSHER["stop"].unlink(missing_ok=True)
    _FLUSHER["log"].close()
    if code:
        print(f"MLflow: the tracking flusher failed (logs/tracking_flush.log); the runs wait in "
              f"{_tracking.SPOOL}/: `python -m pipeline_src tracking flush` logs them", file=sys.stderr)


onsuccess:
    _stop_forkserver()
    _stop_flusher("FINISHED")
    from pipeline_src.headline import headline

    if not os.environ.get("PIPELINE_SUMMARY_FOLLOWS"):  # `make run` prints it last, after the report (summary.py)
        print(headline(PLAN, Path.cwd()), file=sys.stderr)  # the run's result in plain words, where the tables are


onerror:
    _stop_forkserver()
    _stop_flusher("FAILED")
