"""What each job reserves on the machine or asks a cluster for: threads, memory, runtime, GPUs.

Read from the ``resources:`` section of params.yaml: ``resources.default`` for every job, overridden
per rule kind (the rule's name: ``resources.train``, ``resources.attack``, ...). Snakemake schedules
local jobs with these numbers (``--resources gpu=1`` in profiles/default caps the GPUs in use) and a
cluster executor turns them into its requests (SLURM: ``--mem``, ``--time``, ``--cpus-per-task``,
``--gpus``). None of them changes a result, so they are not part of any job's parameters.

Threads: jobs that run torch use ``training.threads`` torch threads (a parameter of the results:
thread count can change floating-point reductions), so their Snakemake threads are that number and
``resources.<kind>.threads`` may only repeat it. Other jobs default to one thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline_src.config import ParamsError

# Rule kinds whose jobs call torch.set_num_threads(training.threads).
TORCH_KINDS = frozenset({"train", "attack", "evaluate", "train_denoiser", "evaluate_denoised",
                         "whitebox", "audit_craft", "audit_model"})
FIELDS = ("mem_mb", "runtime", "gpu")


@dataclass(frozen=True)
class JobResources:
    """One rule kind's reservation. ``runtime`` in minutes (Snakemake's and SLURM's unit)."""
    threads: int
    mem_mb: int
    runtime: int
    gpu: int = 0

    def snakemake(self) -> dict[str, int]:
        """The rule's ``resources:`` (gpu only where one is wanted: a CPU job asks for no GPU at all)."""
        out = {"mem_mb": self.mem_mb, "runtime": self.runtime}
        if self.gpu:
            out["gpu"] = self.gpu
        return out


def job_resources(cfg: dict, kind: str) -> JobResources:
    """``cfg`` is validated params (defaults filled); a kind without an entry gets ``resources.default``."""
    section = cfg.get("resources", {})
    base = section.get("default", {})
    own = section.get(kind, {})
    values = {f: int(own.get(f, base.get(f, _FALLBACK[f]))) for f in FIELDS}
    torch_threads = int(cfg["training"]["threads"])
    threads = int(own.get("threads", torch_threads if kind in TORCH_KINDS else 1))
    return JobResources(threads=threads, **values)


def check_resources(cfg: dict, rule_kinds: set[str] | frozenset[str], source: str = "params.yaml") -> None:
    """Every entry names a rule of the workflow, and torch jobs' threads agree with training.threads."""
    section = cfg.get("resources", {})
    for kind, entry in section.items():
        if kind == "default":
            continue
        if kind not in rule_kinds:
            raise ParamsError(f"{source}: 'resources.{kind}' names no rule of the workflow; "
                              f"rules: default (every job), {', '.join(sorted(rule_kinds))}")
        torch_threads = cfg["training"]["threads"]
        if kind in TORCH_KINDS and "threads" in entry and entry["threads"] != torch_threads:
            raise ParamsError(f"{source}: 'resources.{kind}.threads' = {entry['threads']} differs from "
                              f"'training.threads' = {torch_threads}, the torch threads these jobs run with; "
                              f"set training.threads instead and drop resources.{kind}.threads")


_FALLBACK = {"mem_mb": 2000, "runtime": 60, "gpu": 0}  # only if params bypassed the schema's defaults
