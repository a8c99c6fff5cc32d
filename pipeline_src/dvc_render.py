"""dvc.yaml rendered from the Snakefile's own job graph, through Snakemake's Python API.

Why rendered and not DVC-templated: a job's name derives from table rows (a model per row and seed, an
HGD denoiser per protected model, Table 4's rows reusing Table 1's models), and DVC's ``foreach``/``matrix``
can neither nest (tables x rows x seeds) nor compute those names; a templated dvc.yaml would restate the
graph by hand (docs/adr/0001-one-job-graph.md). So the Snakefile stays the one definition and this module
asks Snakemake for every job of the default run (``forceall``), then writes one stage per job: its command
(the interpreter as ``python``), its inputs as deps, its outputs, and as ``params`` the keys the job reads
(the rule's ``reads`` param, declared by the stage's entry module).

Render again only when the *structure* changes (tables, rows, seeds, datasets, attacks, denoisers):
``python -m pipeline_src dvc-yaml``. A value never appears in dvc.yaml, so editing one is ``dvc repro``
(or ``dvc exp run -S key=value``) and nothing else; a stage refuses to run when params.yaml's structure no
longer matches the ``# structure:`` line below (pipeline_src/stages/_common.py).

Outputs named ``metrics_*`` in a rule are DVC metrics, ``plot_*`` are DVC plots (both small, kept in git:
``dvc metrics diff`` and ``dvc plots diff`` compare commits and experiments).
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_src.config import ParamsError
from pipeline_src.io import write_text

REPO = Path(__file__).resolve().parent.parent
HEADER = """\
# Rendered from the Snakefile's jobs for params.yaml by `python -m pipeline_src dvc-yaml`: do not edit.
# Render again only after changing tables, rows, seeds, datasets, attacks or denoisers; a changed value is
# just `dvc repro` (or `dvc exp run -S key=value`). One stage per Snakemake job, the same command.
"""
STRUCTURE_PREFIX = "# structure: "
TARGETS = ("all",)  # the Snakefile's target rules whose jobs dvc.yaml holds: `make run`'s (the audit: `make audit`)  # pipeline_src.stages._common checks it in every DVC stage
# x and y of each plot kind (by the rule's output name)
PLOTS = {"plot_curve": {"x": "epoch", "y": ["train_accuracy", "test_accuracy"], "title": "training"},
         "plot_eps": {"x": "eps", "title": "accuracy (%) vs eps (of 255; 0 = clean)"}}


@dataclass(frozen=True)
class Job:
    """One Snakemake job as DVC sees it."""
    rule: str
    wildcards: dict[str, str]
    cmd: str
    inputs: list[str]
    outputs: dict[str, list[str]]  # rule's output name -> files
    params: list[str]


def stage_name(job: Job) -> str:
    """DVC stage names allow no punctuation but '_' and '-': the decimal point of a lambda becomes 'p'
    (train_skin4_resnet18_ln0p1_la0_s0 trains skin4_resnet18_ln0.1_la0_s0)."""
    return "_".join([job.rule, *job.wildcards.values()]).replace(".", "p")


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    return p.relative_to(root).as_posix() if p.is_absolute() and p.is_relative_to(root) else str(path)


def snakemake_jobs(root: Path = REPO, snakefile: Path | None = None) -> list[Job]:
    """Every job of ``root``'s Snakefile for ``root/params.yaml``, as if nothing existed yet, in DAG order."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    snakefile = snakefile or root / "Snakefile"
    quiet = io.StringIO()
    cwd = Path.cwd()
    try:
        with contextlib.redirect_stderr(quiet), SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            wf_api = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
                                  snakefile=snakefile, workdir=root)
            # every job of `rule all`: `dvc repro` rebuilds what `make run` builds; the 45-minute audit stays
            # with Snakemake (`make audit`), so that a value change never drags it into `dvc repro`
            wf_api.dag(dag_settings=DAGSettings(targets=set(TARGETS), forceall=True))
            # No public call returns the DAG object itself (the API prints graphs as text); these two are
            # what DAGApi.printdag runs before printing. Pinned: snakemake>=8,<10 (pyproject.toml).
            workflow = wf_api._workflow
            workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
            workflow._build_dag()
            # in dependency order, each level sorted: the same params give the same dvc.yaml
            jobs = [job for level in workflow.dag.toposorted()
                    for job in sorted(level, key=lambda j: (j.rule.name, sorted(j.wildcards_dict.items())))]
            out = []
            for job in jobs:
                if not job.rule.shellcmd:
                    continue  # rule all
                cmd = job.shellcmd
                python = shlex.quote(sys.executable)
                if not cmd.startswith(python + " "):
                    raise RuntimeError(f"rule {job.rule.name}: its command does not start with the interpreter")
                tokens = ["python", *shlex.split(cmd[len(python) + 1:])]
                named = {name: [_relative(f, root) for f in files]
                         for name, files in _named(job.output).items()}
                reads = job.params.get("reads", {}) if hasattr(job.params, "get") else {}
                out.append(Job(job.rule.name, dict(job.wildcards_dict),
                               shlex.join(_relative(t, root) for t in tokens),
                               list(dict.fromkeys(_relative(f, root) for f in job.input)), named, list(reads)))
            return out
    except Exception as exc:
        raise ParamsError(f"Snakemake could not plan the workflow for {root / 'params.yaml'}: {exc}\n"
                          f"{quiet.getvalue()[-2000:]}") from exc
    finally:
        os.chdir(cwd)


def _named(files: Any) -> dict[str, list[str]]:
    """A Namedlist of outputs -> {name: files}; unnamed outputs under ''."""
    keys = {name: list(value) if isinstance(value, list) else [value] for name, value in files._allitems()
            if name is not None}
    named = {f for fs in keys.values() for f in fs}
    rest = [f for f in files if f not in named]
    return ({"": rest} if rest else {}) | keys


def render(root: Path = REPO) -> str:
    """dvc.yaml's text for ``root``'s params.yaml."""
    from pipeline_src.config import load_params, validate_params
    from pipeline_src.plan import build_plan, structure_hash

    plan = build_plan(validate_params(load_params(root / "params.yaml"), source=str(root / "params.yaml")))
    stages: dict[str, dict] = {}
    plots: dict[str, dict] = {}
    for job in snakemake_jobs(root):
        stage: dict[str, Any] = {"cmd": job.cmd, "deps": job.inputs}
        if job.params:
            stage["params"] = job.params
        outs, metrics, stage_plots = [], [], []
        for name, files in job.outputs.items():
            for f in files:
                if name.startswith("metrics_"):
                    metrics.append({f: {"cache": False}})
                elif name.startswith("plot_"):
                    stage_plots.append({f: {"cache": False}})
                    plot_id = str(Path(f).parent) if name == "plot_curve" else f  # one plot for every curve
                    props = dict(PLOTS[name]) | ({} if "y" in PLOTS[name] else {"y": _eps_columns(plan, job)})
                    plots[plot_id] = props
                else:
                    outs.append(f)
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = metrics
        if stage_plots:
            stage["plots"] = stage_plots
        name = stage_name(job)
        if name in stages:
            raise RuntimeError(f"two jobs map to the DVC stage {name}")
        stages[name] = stage
    document = {"stages": stages, "plots": [{k: v} for k, v in plots.items()]}
    text = yaml.dump(document, Dumper=_NoAliases, sort_keys=False, width=float("inf"), allow_unicode=True)
    return HEADER + STRUCTURE_PREFIX + structure_hash(plan) + "\n" + text


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _eps_columns(plan, job: Job) -> list[str]:
    """The series of a table's accuracy-vs-eps plot (stages/table.py's columns: '<row> <method>')."""
    from pipeline_src.stages.table import row_key
    from pipeline_src.config import fmt_number

    table = job.wildcards["table"]
    methods = sorted({plan.cfg["attacks"][a]["method"] for a in plan.attacks} & {"fgsm", "ifgsm"})
    rows = dict.fromkeys(row_key(fmt_number(m.lambda_n), fmt_number(m.lambda_a)) for m in plan.tables[table])
    return [f"{r} {m}" for r in rows for m in methods]


def write_dvc_yaml(out: Path, root: Path = REPO) -> None:
    write_text(out, render(root))


def check_dvc_yaml(out: Path, root: Path = REPO) -> None:
    current = out.read_text() if out.is_file() else ""
    if current != render(root):
        raise ParamsError(f"{out} is not what the Snakefile renders for params.yaml: run "
                          "`python -m pipeline_src dvc-yaml` and commit it")
