# MLflow tracking (pipeline_src/tracking.py, docs/tracking.md). One step creates the database and
# every experiment before any parallel job, so no job meets a schema migration or an
# experiment-creation race; a store that cannot be reached stops the workflow before any job runs.
from pipeline_src import tracking

TRACKING = CFG["tracking"]["enabled"]
TRACKING_URI = tracking.tracking_uri() if TRACKING else ""
# A flag in the shell command, not a rule param: switching tracking on or off must not make
# finished results out of date.
TRACKING_ARG = "--tracking" if TRACKING else ""
TRACKING_MARKER = "results/metrics/tracking_init.json"

if TRACKING:
    try:
        tracking.check_reachable(TRACKING_URI)  # a socket or a folder: no mlflow import at DAG time
    except tracking.TrackingError as err:
        raise WorkflowError(str(err)) from None


def tracking_ready():
    """Input of every tracked job: it orders them after tracking_init. ancient(): re-initialising the
    store (a new MLFLOW_TRACKING_URI, edited code) never makes trained models out of date."""
    return ancient(TRACKING_MARKER)


rule tracking_init:
    input:
        code=code("tracking.py"),
    output:
        TRACKING_MARKER,
    log:
        "logs/tracking_init.log",
    params:
        experiments=shlex.join(PLAN.datasets),
        disabled="" if TRACKING else "--disabled",
        uri=TRACKING_URI,  # a different store is initialised again
    threads: job_threads("tracking_init")
    resources: **job_resources("tracking_init")
    shell:
        "{PYTHON} -m pipeline_src tracking-init --experiments {params.experiments} {params.disabled}"
        " --out {output} 2> {log}"
