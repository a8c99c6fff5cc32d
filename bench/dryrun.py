"""A `snakemake -n` start (parse the Snakefile, plan every job, print the plan): two revisions side by side,
interleaved round by round, each in a fresh copy of its tracked files, on the default params.yaml with nothing
built yet. Most tests and every `make run`, `dvc repro` render and SLURM job start Snakemake this way.

    python bench/dryrun.py --before e62512a [--after WORKTREE] [--rounds 7] [--markdown OUT]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compute import python_pass_s  # noqa: E402
from make_run import checkout, emit, scratch_dir, user_env  # noqa: E402


def dry_run(root: Path) -> float:
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2"], cwd=root, env=user_env(),
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed in {root}:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the earlier revision")
    ap.add_argument("--after", default=None, help="the later revision (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    base = scratch_dir("dryrun-")
    roots = {"before": checkout(args.before, base / "before"), "after": checkout(args.after, base / "after")}
    times: dict[str, list[float]] = {"python -c pass": [], "before": [], "after": []}
    dry_run(roots["before"]), dry_run(roots["after"])  # warm the file cache for both
    for i in range(args.rounds):
        times["python -c pass"].append(python_pass_s())
        for label in (("before", "after") if i % 2 == 0 else ("after", "before")):
            times[label].append(dry_run(roots[label]))
        print(f"round {i + 1}: before {times['before'][-1]:.2f} s, after {times['after'][-1]:.2f} s", flush=True)
    names = {"python -c pass": "python -c pass", "before": f"snakemake -n, {args.before}",
             "after": f"snakemake -n, {args.after or 'working tree'}"}
    before = statistics.median(times["before"])
    after = f" --after {args.after}" if args.after else ""
    lines = [f"`python bench/dryrun.py --before {args.before} --rounds {args.rounds}{after}`: default params.yaml,"
             " nothing built, interleaved rounds",
             "", "| command | median (s) | best (s) | median / before |", "|---|---|---|---|"]
    for key, label in names.items():
        med = statistics.median(times[key])
        lines.append(f"| {label} | {med:.2f} | {min(times[key]):.2f} | {med / before:.2f} |")
    emit(lines, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
