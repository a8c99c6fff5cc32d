"""`whitebox_table` job (beyond the paper): one table's white-box records joined like the paper's table.

Example:
    python -m pipeline_src.stages.whitebox_table --table table2_chest3_resnet18 \\
        --evals results/metrics/whitebox/chest3_resnet18_ln0_la0_s0.json ... \\
        --out results/tables/whitebox_table2_chest3_resnet18.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    plan.table(table)
    return [f"tables.{table}", "whitebox.attacks"]  # its rows, and the attacks that order its columns


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table name (one of 'whitebox.tables')")
    p.add_argument("--evals", nargs="+", required=True, help="white-box records of the table's models, in row order")
    p.add_argument("--out", required=True, help="the white-box table (.csv)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, name))
    models = [m.name for m in job.plan.table(name)]
    common.expect([Path(p).stem for p in args.evals], models, f"white-box table {name}: records")
    from pipeline_src.tables import write_tables

    columns = ["clean", *job.plan.whitebox]
    with job.track("whitebox_table", name, view["tables"][name]["dataset"], {"columns": ",".join(columns)},
                   {"table": f"whitebox_{name}", "models": ",".join(models)}, run_name=f"table/whitebox_{name}") as rec:
        for path, model in zip(args.evals, models):
            rec.link(f"row_run_id.{model}", path)
        write_tables(args.evals, columns, args.out, None, None)
        rec.log_artifact(args.out, "tables")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.whitebox_table", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
