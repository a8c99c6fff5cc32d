"""`make test-fast` of two revisions side by side: each run in a fresh copy of its tracked files, the same venv,
interleaved round by round (before, after, before, after, ...), so that both see the same machine.

Each copy is a one-commit git repository (the tests list tracked files). Runs what the Makefile's `test-fast` runs (pytest-xdist on ``--workers`` cores, ``-m "not heavy"``) with each
copy first on PYTHONPATH (this venv's editable install would otherwise import the working tree's code), and
prints a Markdown table of wall times and test counts.

    python bench/testfast.py --before 6f79779 --rounds 2
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_run import checkout, scratch_dir, user_env  # noqa: E402

log = logging.getLogger("bench.testfast")


def git_copy(rev: str | None, dest: Path) -> Path:
    """``checkout`` made a one-commit git repository: the tests list the tracked files with `git ls-files`."""
    checkout(rev, dest)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", f"copy of {rev or 'the working tree'}"]):
        subprocess.run([*git, *step], cwd=dest, check=True, capture_output=True)
    return dest


def run_suite(root: Path, workers: int) -> tuple[float, str]:
    """One `make test-fast` equivalent in ``root``: (wall seconds, pytest's last line)."""
    env = user_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadgroup", "--no-loadscope-reorder",
           "-m", "not heavy", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        log.warning("%s: pytest exited %d: %s\n%s", root.name, done.returncode, last, tail)
    return wall, re.sub(r"=+", "", last).strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the earlier revision")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 4), help="as the Makefile: nproc, at most 4")
    ap.add_argument("--keep", action="store_true", help="keep the copies (under /tmp)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    scratch = scratch_dir("bench-testfast-", keep=args.keep)
    revs = {args.before: args.before, "working tree": None}
    walls: dict[str, list[float]] = {name: [] for name in revs}
    lines: dict[str, str] = {}
    for r in range(1, args.rounds + 1):
        for name, rev in revs.items():
            # a fresh copy every round: a run leaves files in its tree (a second run of 6f79779's suite in the
            # same copy failed at collection)
            root = git_copy(rev, scratch / f"{'before' if rev else 'after'}-{r}")
            wall, lines[name] = run_suite(root, args.workers)
            walls[name].append(wall)
            log.info("round %d: %s %.0f s (%s)", r, name, wall, lines[name])
    before = statistics.median(walls[args.before])
    print(f"`python bench/testfast.py --before {args.before} --rounds {args.rounds}` ({args.workers} workers, "
          f"interleaved rounds)\n")
    print("| revision | median | runs | median / before | pytest |")
    print("|---|---|---|---|---|")
    for name, w in walls.items():
        med = statistics.median(w)
        runs = ", ".join(f"{x // 60:.0f} min {x % 60:.0f} s" for x in w)
        print(f"| {name} | {med // 60:.0f} min {med % 60:.0f} s | {runs} | {med / before:.2f} | {lines[name]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
