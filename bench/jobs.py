"""Per-job time and memory from Snakemake's own ``benchmark:`` files, summed per rule (BENCHMARKS.md, figure 4).

Each rule names one file per job, mirroring its log path::

    benchmark: "benchmarks/<rule>/<the log's wildcard path>.tsv"     # e.g. benchmarks/train/{model}.tsv

Snakemake (9.x) times the job's command and samples its process tree with psutil, then writes a TSV whose
header is ``s  h:m:s  max_rss  max_vms  max_uss  max_pss  io_in  io_out  mean_load  cpu_time`` (seconds,
MiB, MiB, ...; "NA" when the job ended before the first sample) and, with ``--benchmark-extended``, also
``jobid  rule_name  wildcards ...``. The rule is the ``rule_name`` column when present, else the folder under
``benchmarks/``; the job's name is the rest of the path. A ``repeat()``-ed benchmark has one row per
repetition: the job counts once, with the mean of its rows' seconds and the largest memory.

This replaces reading ``.snakemake/metadata`` (one record per output file, grouped back into jobs by hash)
wherever a run has benchmark files: the job is the file, and memory comes with it.

    python bench/jobs.py DIR          # prints the per-rule table of the run in DIR (DIR/benchmarks/**/*.tsv)
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCHMARK_DIR = "benchmarks"


@dataclass(frozen=True)
class JobBenchmark:
    """One job's benchmark file."""

    rule: str
    name: str  # the path under benchmarks/<rule>/, without .tsv: the job's wildcards
    seconds: float  # wall time of the job's command (mean over repeats)
    max_rss_mib: float  # NaN when Snakemake could not sample the process
    max_pss_mib: float
    cpu_seconds: float
    end: float  # the file's modification time: when the job finished (epoch seconds)


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "NA", "-") else math.nan
    except ValueError:
        return math.nan


def _nanmax(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def read_benchmark(path: str | Path, root: str | Path) -> JobBenchmark:
    """One ``benchmark:`` TSV below ``root`` (the ``benchmarks/`` folder)."""
    path, root = Path(path), Path(root)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path} is not a Snakemake benchmark file (no 's' column): delete it and re-run its job")
    parts = path.relative_to(root).with_suffix("").parts
    rule = rows[0].get("rule_name") or parts[0]
    name = "/".join(parts[1:]) if len(parts) > 1 else parts[0]
    seconds = [_number(r["s"]) for r in rows]
    return JobBenchmark(rule=rule, name=name, seconds=sum(seconds) / len(seconds),
                        max_rss_mib=_nanmax([_number(r.get("max_rss")) for r in rows]),
                        max_pss_mib=_nanmax([_number(r.get("max_pss")) for r in rows]),
                        cpu_seconds=_nanmax([_number(r.get("cpu_time")) for r in rows]),
                        end=path.stat().st_mtime)


def read_benchmarks(workflow_dir: str | Path) -> list[JobBenchmark]:
    """Every ``DIR/benchmarks/**/*.tsv``, sorted by path."""
    root = Path(workflow_dir) / BENCHMARK_DIR
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no Snakemake benchmark files under {root}: add `benchmark:` to the rules "
                                "(see bench/jobs.py) and run the workflow")
    return [read_benchmark(f, root) for f in files]


# ----------------------------------------------------------------------------------------- detail rows

_MODEL = re.compile(r"(?P<arch>[a-z0-9]+)_ln(?P<ln>[0-9.e-]+)_la(?P<la>[0-9.e-]+)_s\d+$")
_SURROGATE = re.compile(r"_surrogate_(?P<arch>[a-z0-9]+)_s\d+$")


def default_detail(rule: str, name: str) -> str | None:
    """The sub-rows BENCHMARKS.md shows: train by architecture and NA / defended / surrogate (the model's
    name, ``<dataset>_<arch>_ln<x>_la<y>_s<seed>`` or ``<dataset>_surrogate_<arch>_s<seed>``), attack by
    method (the attack's name up to its first ``_`` or digit: fgsm_eps4 -> fgsm, ifgsm10_eps8 -> ifgsm)."""
    stem = name.rsplit("/", 1)[-1]
    if rule == "train":
        if m := _SURROGATE.search(stem):
            return f"{m['arch']} surrogate"
        if m := _MODEL.search(stem):
            na = float(m["ln"]) == 0 and float(m["la"]) == 0
            return f"{m['arch']} {'NA' if na else 'defended'}"
        return None
    if rule == "attack":
        return re.match(r"[a-z]+", stem)[0] if re.match(r"[a-z]+", stem) else None
    return None


def summarize_benchmarks(workflow_dir: str | Path,
                         detail: Callable[[str, str], str | None] = default_detail) -> dict:
    """Jobs, job-seconds and peak memory per rule, in the shape ``bench/run.py``'s figure 4 renders
    (the keys of ``summarize_workflow`` plus ``max_rss_mib`` / ``max_pss_mib`` per rule)."""
    jobs = read_benchmarks(workflow_dir)
    per_rule: dict[str, dict] = {}
    details: dict[str, dict[str, dict]] = {}
    for j in jobs:
        r = per_rule.setdefault(j.rule, {"jobs": 0, "seconds": 0.0, "max": 0.0, "max_rss_mib": math.nan,
                                         "max_pss_mib": math.nan})
        r["jobs"] += 1
        r["seconds"] += j.seconds
        r["max"] = max(r["max"], j.seconds)
        r["max_rss_mib"] = _nanmax([r["max_rss_mib"], j.max_rss_mib])
        r["max_pss_mib"] = _nanmax([r["max_pss_mib"], j.max_pss_mib])
        if d := detail(j.rule, j.name):
            dd = details.setdefault(j.rule, {}).setdefault(d, {"jobs": 0, "seconds": 0.0})
            dd["jobs"] += 1
            dd["seconds"] += j.seconds
    first_start = min(j.end - j.seconds for j in jobs)
    last_end = max(j.end for j in jobs)
    return {"dir": str(workflow_dir), "source": "benchmarks", "jobs": len(jobs), "stale": 0,
            "records": len(jobs), "span_s": last_end - first_start, "first_start": first_start,
            "last_end": last_end, "job_seconds": sum(j.seconds for j in jobs), "per_rule": per_rule,
            "detail": details, "peak_pss_bound_mib": peak_memory_bound(jobs)}


def peak_memory_bound(jobs: list[JobBenchmark]) -> float:
    """An upper bound on the run's peak summed PSS: the largest sum of max_pss over jobs that ran at the same
    time (each from ``end - seconds`` to ``end``). Every job is counted at its own peak, so the true peak
    (``bench/peak_memory.py`` samples it) is at most this. NaN if no job has a PSS sample."""
    events = sorted([(j.end - j.seconds, 1, j) for j in jobs] + [(j.end, 0, j) for j in jobs],
                    key=lambda e: (e[0], e[1]))  # at a tie, ends before starts: back-to-back jobs don't overlap
    running: set[int] = set()
    best, now = math.nan, 0.0
    for _, start, j in events:
        pss = 0.0 if math.isnan(j.max_pss_mib) else j.max_pss_mib
        if start:
            running.add(id(j))
            now += pss
            best = now if math.isnan(best) else max(best, now)
        elif id(j) in running:
            running.discard(id(j))
            now -= pss
    if all(math.isnan(j.max_pss_mib) for j in jobs):
        return math.nan
    return best


def render_rule_table(summary: dict) -> list[str]:
    """The per-rule Markdown table; with peak memory per job when the summary has it (benchmark files)."""
    total = summary["job_seconds"] or 1.0
    memory = any("max_rss_mib" in r for r in summary["per_rule"].values())
    lines = ["| rule | jobs | job-seconds | share | mean s/job | max s/job |"
             + (" max RSS/job (MiB) | max PSS/job (MiB) |" if memory else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if memory else "")]

    def mib(v: float) -> str:
        return "" if math.isnan(v) else f"{v:.0f}"

    for rule, r in sorted(summary["per_rule"].items(), key=lambda kv: (-kv[1]["seconds"], kv[0])):
        lines.append(f"| {rule} | {r['jobs']} | {r['seconds']:.0f} | {100 * r['seconds'] / total:.1f}% | "
                     f"{r['seconds'] / r['jobs']:.1f} | {r['max']:.1f} |"
                     + (f" {mib(r['max_rss_mib'])} | {mib(r['max_pss_mib'])} |" if memory else ""))
        for d, dd in sorted(summary["detail"].get(rule, {}).items(), key=lambda kv: (-kv[1]["seconds"], kv[0])):
            lines.append(f"| &nbsp;&nbsp;{rule}: {d} | {dd['jobs']} | {dd['seconds']:.0f} | "
                         f"{100 * dd['seconds'] / total:.1f}% | {dd['seconds'] / dd['jobs']:.1f} | |"
                         + (" | |" if memory else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow_dir", type=Path, help="a completed run's folder (holding benchmarks/)")
    args = ap.parse_args(argv)
    try:
        s = summarize_benchmarks(args.workflow_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{s['jobs']} jobs, {s['job_seconds']:.0f} job-seconds, first start to last end {s['span_s']:.0f} s")
    if not math.isnan(s["peak_pss_bound_mib"]):
        print(f"peak summed PSS at most {s['peak_pss_bound_mib'] / 1024:.2f} GiB (each job at its own peak)")
    print("\n".join(render_rule_table(s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
