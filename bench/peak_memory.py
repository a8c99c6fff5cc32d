"""Peak memory of a command and every process it starts (e.g. the default workflow).

    python bench/peak_memory.py -- snakemake --cores all

Samples the process tree every ``--interval`` seconds and reports the peak of the summed PSS
(proportional set size: a page shared by n processes counts 1/n in each, so torch's libraries and
the memory-mapped datasets are not counted once per job) and, for reference, the summed RSS, which
counts shared pages in every process and so over-states the total.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

import psutil

log = logging.getLogger("peak_memory")


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(summed PSS, summed RSS, processes) of ``root`` and its descendants, in bytes."""
    pss = rss = n = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss += getattr(info, "pss", info.rss)
        rss += info.rss
        n += 1
    return pss, rss, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak = (0, 0, 0)
    peak_rss = 0
    while child.poll() is None:
        pss, rss, n = tree_memory(root)
        if pss > peak[0]:
            peak = (pss, rss, n)
        peak_rss = max(peak_rss, rss)
        time.sleep(args.interval)
    wall = time.monotonic() - start
    log.info("command: %s", " ".join(command))
    log.info("exit status %d after %.0f s", child.returncode, wall)
    log.info("peak summed PSS %.2f GiB (%d processes at that moment; their summed RSS %.2f GiB); "
             "peak summed RSS %.2f GiB", peak[0] / 2**30, peak[2], peak[1] / 2**30, peak_rss / 2**30)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
