"""`stats` job: one paper table's 95% Wilson intervals and exact McNemar tests against its NA row, from the
per-image correctness flags of its evaluations (a long CSV: row x column).

Example:
    python -m pipeline_src.stages.stats --table table2_chest3_resnet18 \\
        --evals results/metrics/eval/chest3_resnet18_ln0_la0_s0.json ... \\
        --out results/tables/table2_chest3_resnet18_stats.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    plan.table(table)
    return [f"tables.{table}", "attacks"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table name (a key of 'tables')")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation records of the table's models")
    p.add_argument("--out", required=True, help="statistics (.csv)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.table
    job.view(keys(job.cfg, job.plan, name))
    common.expect([Path(p).stem for p in args.evals], [m.name for m in job.plan.table(name)],
                  f"stats of {name}: evaluations")
    from pipeline_src.stats import write_stats

    # no tracking run of its own: the figures job of the table logs this CSV
    write_stats(args.evals, ["clean", *job.plan.attacks], args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.stats", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
