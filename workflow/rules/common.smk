# Validation of params.yaml, the plan derived from it, and input functions shared by the rules.
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from pipeline_src.config import SCHEMA_PATH, ParamsError, to_cli_args, validate_params
from pipeline_src.plan import build_plan

REPO = Path(workflow.basedir)
PYTHON = sys.executable  # the interpreter running Snakemake: the venv's, with pipeline_src installed

# params.yaml first, then the --configfile overlays merged over it
_files = [str(p) for p in workflow.configfiles]
_sources = " + ".join(sorted(_files, key=lambda p: not p.endswith("/params.yaml"))) or "params.yaml"
try:
    CFG = validate_params(config, source=_sources)
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}") from None
validate(config, str(SCHEMA_PATH))  # the same schema, through Snakemake's own validator
PLAN = build_plan(CFG)

for _name, _table in CFG["tables"].items():
    if "paper" in _table and not (REPO / "paper" / _table["paper"]).is_file():
        raise WorkflowError(f"invalid parameters: 'tables.{_name}.paper' = {_table['paper']!r} is not a file "
                            f"in {REPO / 'paper'}; available: {', '.join(sorted(p.name for p in (REPO / 'paper').glob('*.csv')))}")


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(PLAN.datasets),
    model=_alternatives(PLAN.models),
    attack=_alternatives(PLAN.attacks),
    table=_alternatives(PLAN.tables),


def code(*modules):
    """The source files a rule runs: listed as inputs so that editing one re-runs its jobs."""
    return [str(REPO / "pipeline_src" / m) for m in ("cli.py", "config.py", "io.py", *modules)]


def cli_args(obj):
    return shlex.join(to_cli_args(obj))


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
# (pipeline_src/resources.py). One line each in a rule, with the rule's own name as the kind:
#
#     rule my_rule:
#         ...
#         threads: job_threads("my_rule")
#         resources: **job_resources("my_rule")
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
    """Called at the end of the Snakefile, once every rule exists: a misspelt entry is an error."""
    try:
        _resources.check_resources(CFG, {r.name for r in workflow.rules} | _RESOURCE_KINDS, source=_sources)
    except ParamsError as err:
        raise WorkflowError(f"invalid parameters: {err}") from None
