"""`make run` (installation excluded) of two revisions on the same machine, one after the other: wall time, jobs,
job-seconds per rule, and whether the tables came out byte-identical.

    python bench/make_run.py --before 9517c06 [--after WORKTREE] [--markdown OUT]

Each revision runs in a fresh copy of its tracked files (``git archive``) with this venv's interpreter, exactly
the three commands of its Makefile's `run` target (`snakemake --cores all`, `snakemake --report`, `python -m
pipeline_src summary`); ``--after`` defaults to the working tree. Job-seconds come from Snakemake's benchmark
files where the revision writes them, else from its `.snakemake/metadata` (bench/run.py's summarize_run).
"""
from __future__ import annotations

import argparse
import atexit
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


def checkout(rev: str | None, dest: Path) -> Path:
    dest.mkdir(parents=True)
    if rev is None:  # the working tree: tracked and new files, as a fresh clone of it would have them
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split("\n")
        for rel in filter(None, files):
            if (REPO / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_bytes((REPO / rel).read_bytes())
    else:
        # no shell: the revision is whatever the user typed
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--", rev], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def scratch_dir(prefix: str, keep: bool = False) -> Path:
    """A new temporary folder, removed when the script exits unless ``keep``: benchmarks copy revisions and
    run workflows there (GBs), which must not pile up on a disk that CI shares."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if keep:
        print(f"keeping {folder}", flush=True)
    else:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def user_env() -> dict[str, str]:
    """This environment without a tracking store, DVC or pipeline variable: a run as a user starts it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PIPELINE_", "DVC_"))}


def make_run(root: Path) -> dict[str, float]:
    """The Makefile's `run` recipe, timed step by step, with this venv first on PATH (as `make` sets it)."""
    env = user_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    bin_ = Path(sys.executable).parent
    steps = {"snakemake --cores all": [str(bin_ / "snakemake"), "--cores", "all"],
             "snakemake --report": [str(bin_ / "snakemake"), "--report", "results/report.html"],
             "summary": [sys.executable, "-m", "pipeline_src", "summary"]}
    times = {}
    for name, cmd in steps.items():
        t0 = time.perf_counter()
        result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        times[name] = time.perf_counter() - t0
        (root / f"make_run.{name.split()[0]}.{len(times)}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed in {root}:\n{result.stderr[-3000:]}")
    times["make run"] = sum(times.values())
    return times


def fmt(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the earlier revision (e.g. 9517c06)")
    ap.add_argument("--after", default=None, help="the later revision (default: the working tree)")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the two checkouts and their runs (GBs)")
    args = ap.parse_args()
    from run import summarize_run

    base = scratch_dir("make-run-", keep=args.keep)  # two checkouts and two runs, several GB
    runs = {}
    for label, rev in (("before", args.before), ("after", args.after)):
        root = checkout(rev, base / label)
        times = make_run(root)
        runs[label] = {"rev": rev or "working tree", "root": root, "times": times, "summary": summarize_run(root)}
        print(label, {k: round(v, 1) for k, v in times.items()}, flush=True)
    before, after = runs["before"], runs["after"]
    tables = sorted(p.name for p in (before["root"] / "results" / "tables").glob("table[123]_*.csv"))
    same = [t for t in tables if filecmp.cmp(before["root"] / "results" / "tables" / t,
                                              after["root"] / "results" / "tables" / t, shallow=False)]
    lines = [f"| | before ({before['rev']}) | after ({after['rev']}) | after / before |", "|---|---|---|---|"]
    for step in ("snakemake --cores all", "snakemake --report", "summary", "make run"):
        b, a = before["times"][step], after["times"][step]
        lines.append(f"| {step} | {fmt(b)} | {fmt(a)} | {a / b:.2f} |")
    bs, as_ = before["summary"], after["summary"]
    lines.append(f"| jobs | {bs['jobs']} | {as_['jobs']} | |")
    lines.append(f"| job-seconds | {bs['job_seconds']:.0f} | {as_['job_seconds']:.0f} | "
                 f"{as_['job_seconds'] / bs['job_seconds']:.2f} |")
    lines += ["", "| rule | jobs before | job-seconds before | jobs after | job-seconds after |", "|---|---|---|---|---|"]
    rules = sorted(set(bs["per_rule"]) | set(as_["per_rule"]),
                   key=lambda r: -max(bs["per_rule"].get(r, {}).get("seconds", 0), as_["per_rule"].get(r, {}).get("seconds", 0)))
    for rule in rules:
        b, a = bs["per_rule"].get(rule, {}), as_["per_rule"].get(rule, {})
        lines.append(f"| {rule} | {b.get('jobs', '')} | {b.get('seconds', 0):.0f} | {a.get('jobs', '')} | "
                     f"{a.get('seconds', 0):.0f} |")
    lines += ["", f"Paper tables 1-3 byte-identical: {len(same)} of {len(tables)} files"
                  + ("" if len(same) == len(tables) else f" (differ: {', '.join(sorted(set(tables) - set(same)))})")]
    emit(lines, args.markdown)
    return 0


def emit(lines: list[str], markdown: str | None) -> None:
    """Print a benchmark's Markdown and write it to ``markdown`` if given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        Path(markdown).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
