"""`combined_table` job (Table 4): one combined-defence table, by name, and its side-by-side with the paper.

Example:
    python -m pipeline_src.stages.combined_table --table table4_skin4_combined \\
        --evals results/metrics/eval/skin4_resnet18_ln0_la0_s0.json results/metrics/eval_denoised/... \\
        --paper paper/table4_skin_combined_defenses.csv \\
        --out results/tables/table4_skin4_combined.csv --vs_paper results/tables/table4_skin4_combined_vs_paper.csv
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.combined_plan import CombinedRow
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def rows(plan: Plan, table: str) -> list[CombinedRow]:
    if table not in plan.combined:
        raise common.ParamsError(f"no combined table {table!r} in the parameters; known: "
                                 f"{', '.join(plan.combined) or 'none'}")
    return plan.combined[table]


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    rows(plan, table)
    return [f"combined_tables.{table}", "attacks"]  # its rows and labels, and the attacks that order its columns


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="combined table name (a key of 'combined_tables')")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation records, one per row, in row order")
    p.add_argument("--paper", default=None, help="the published table (.csv), if any")
    p.add_argument("--out", required=True, help="the table (.csv)")
    p.add_argument("--vs_paper", required=True, help="ours vs the paper (.csv)")


def run(job: common.Job) -> None:
    args, table = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, table))
    planned = rows(job.plan, table)
    if len(args.evals) != len(planned):
        raise ValueError(f"combined table {table}: {len(args.evals)} --evals for {len(planned)} rows")
    from pipeline_src.combined import write_combined_tables

    labels = [r.label for r in planned]
    columns = ["clean", *job.plan.attacks]
    with job.track("combined_table", table, view["combined_tables"][table]["dataset"], {"columns": ",".join(columns)},
                   {"table": table, "rows": ",".join(f"{r.label}={r.denoiser or ''}/{r.model}" for r in planned)},
                   run_name=f"table/{table}") as rec:
        for path, row in zip(args.evals, planned):
            rec.link(f"row_run_id.{row.label}", path)
        write_combined_tables(args.evals, labels, columns, args.out, args.paper, args.vs_paper)
        for path in (args.out, args.vs_paper):
            rec.log_artifact(path, "tables")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.combined_table", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
