# Validation of the parameters, the run's directory, and the helpers every rule uses.
import importlib
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from pipeline_src import codedeps
from pipeline_src.config import SCHEMA_PATH, ParamsError, load_params, validate_params
from pipeline_src.plan import build_plan
from pipeline_src.stages import _common as stage_common

REPO = Path(workflow.basedir).resolve()
ROOT = Path.cwd().resolve()  # where Snakemake started (or --directory): the default store lives here
PY = shlex.quote(sys.executable)  # the interpreter running Snakemake: the venv's, with pipeline_src installed

RAW_CONFIG = yaml.safe_load(yaml.safe_dump(config))  # as merged, before Snakemake's validate() fills defaults in
# params.yaml first, then the --configfile overlays merged over it
_files = [str(p) for p in workflow.configfiles]
_sources = " + ".join(sorted(_files, key=lambda p: Path(p).name != "params.yaml")) or "params.yaml"
try:
    load_params(*workflow.configfiles)  # Snakemake's own loader lets a duplicated key win silently: ours refuses it
    CFG = validate_params(config, source=_sources)
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}") from None
validate(config, str(SCHEMA_PATH))  # the same schema, through Snakemake's own validator
PLAN = build_plan(CFG)
RUN = CFG["run"]


def _check_paper_files(section):
    for name, table in CFG.get(section, {}).items():
        if "paper" in table and not (REPO / "paper" / table["paper"]).is_file():
            raise WorkflowError(f"invalid parameters: '{section}.{name}.paper' = {table['paper']!r} is not a file in "
                                f"{REPO / 'paper'}; available: {', '.join(sorted(p.name for p in (REPO / 'paper').glob('*.csv')))}")


_check_paper_files("tables")
_check_paper_files("combined_tables")


# --------------------------------------------------------------------------- the run's directory
# The run params.yaml names writes to the repository (what DVC reads and writes too); any other
# configuration is a named run in runs/<run>/, or in --directory when Snakemake is given one. Its jobs read
# their parameters from params.yaml in that directory, written here: the merged configuration, with paths
# relative to the repository made absolute.
GENERATED = "# Written by the Snakefile: the parameters of run {run} ({sources}). Jobs read it; do not edit.\n"


def _absolute(value):
    return value if value is None or os.path.isabs(value) else str(REPO / value)


def _resolved(cfg):
    out = yaml.safe_load(yaml.safe_dump(cfg))  # a deep copy of plain data
    for ds in out.get("datasets", {}).values():
        for key in ("path", "raw_dir"):
            if key in ds:
                ds[key] = _absolute(ds[key])
        if ds.get("source") in ("isic2018", "rsna", "medmnist") and "raw_dir" not in ds:
            ds["raw_dir"] = str(REPO / "data" / "raw")  # one download cache for every run
    return out


def _write_run_params(folder):
    target = folder / "params.yaml"
    text = GENERATED.format(run=RUN, sources=_sources) + yaml.safe_dump(_resolved(RAW_CONFIG), sort_keys=False)
    if target.is_file():
        current = target.read_text()
        if current == text:
            return
        if not current.startswith(GENERATED.split("{run}")[0]):
            raise WorkflowError(f"{target} exists and was not written by this workflow: run from the repository, "
                                "or give Snakemake another --directory")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".params.yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


if ROOT == REPO:
    _own = load_params(REPO / "params.yaml")
    if RUN == _own.get("run", "default"):
        if RAW_CONFIG != _own:
            raise WorkflowError(
                f"invalid parameters: {_sources} change params.yaml's values but keep its run name {RUN!r}; the run "
                "params.yaml names is params.yaml alone (what `dvc repro` reads). Give the overlay its own "
                "`run: <name>` (its outputs then go to runs/<name>/), or edit params.yaml itself")
    else:
        workflow.workdir(REPO / "runs" / RUN)  # Snakemake's workdir: every relative path below is the run's
        _write_run_params(REPO / "runs" / RUN)
else:
    _write_run_params(ROOT)


def repo_file(path):
    """A file of the repository as this run's jobs see it: relative in the repository, absolute elsewhere."""
    path = Path(path)
    if path.is_absolute():
        return str(path)
    return path.as_posix() if Path.cwd().resolve() == REPO else str(REPO / path)


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


# --------------------------------------------------------------------------- what a stage reads
def code(stage):
    """The source files of a stage: its entry module and everything it imports (editing one re-runs its jobs)."""
    return [repo_file(f) for f in codedeps.code_files(f"pipeline_src.stages.{stage}", REPO)]


def reads(stage, name):
    """The values of the keys a job of ``stage`` reads: Snakemake re-runs the job when one changes."""
    entry = importlib.import_module(f"pipeline_src.stages.{stage}")
    return stage_common.values(CFG, entry.keys(CFG, PLAN, name))


def stage_cmd(stage):
    return f"{PY} -m pipeline_src.stages.{stage}"


def pairs(names, paths):
    """NAME=PATH items (quoted in the shell command by {params.x:q})."""
    return [f"{n}={p}" for n, p in zip(names, paths)]


# --------------------------------------------------------------------------- paths
def prepared(dataset, split):
    return f"data/prepared/{dataset}/{split}.pt"


def model_path(name):
    return f"models/{name}.pt"


def adversarial_path(dataset, attack):
    return f"data/adversarial/{dataset}/{attack}.pt"


def eval_path(name):
    return f"results/metrics/eval/{name}.json"


def get_final_output():
    return [f"results/tables/{t}{suffix}.csv" for t in (*PLAN.tables, *PLAN.combined) for suffix in ("", "_vs_paper")]


# --------------------------------------------------------------------------- resources per rule
# What a job reserves locally and requests from a cluster, from params.yaml's `resources:` section
# (pipeline_src/resources.py). Two lines in each rule, with the rule's own name as the kind, e.g. for train
#
#         threads: job_threads("train")
#         resources: **job_resources("train")
#
# A kind without an entry in params gets resources.default (and 1 thread). A rule whose job runs torch
# with training.threads threads: add its name to pipeline_src.resources.TORCH_KINDS. A GPU job: give
# its entry `gpu: 1`; profiles/default caps the GPUs in use locally (--resources gpu=1).
from pipeline_src import resources as _resources


# Kinds asked for by rules: usually the rule's own name, but a family of generated rules
# (evaluate_denoised_<table>) shares one kind.
_RESOURCE_KINDS = set()


def job_threads(kind):
    _RESOURCE_KINDS.add(kind)
    return _resources.job_resources(CFG, kind).threads


def job_resources(kind):
    _RESOURCE_KINDS.add(kind)
    return _resources.job_resources(CFG, kind).snakemake()


def check_resource_kinds():
    """Called at the end of the Snakefile, once all rules exist: a misspelt entry is an error."""
    try:
        _resources.check_resources(CFG, {r.name for r in workflow.rules} | _RESOURCE_KINDS, source=_sources)
    except ParamsError as err:
        raise WorkflowError(f"invalid parameters: {err}") from None
