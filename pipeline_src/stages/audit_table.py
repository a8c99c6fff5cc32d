"""`audit_table` job (the audit, beyond the paper): one paper table's rows under every threat model (transfer,
strong transfer, ensemble transfer, white-box, Square, AutoAttack) with 95% Wilson intervals and the sanity
checks, the verdict on each defended row's advantage over NA, and the figure (docs/audit.md).

Example:
    python -m pipeline_src.stages.audit_table --table table2_chest3_resnet18 \\
        --audits results/metrics/audit/chest3_resnet18_ln0_la0_s0/transfer.json ... \\
        --evals results/metrics/eval/chest3_resnet18_ln0_la0_s0.json ... --whitebox results/metrics/whitebox/... \\
        --out results/tables/audit_table2_chest3_resnet18.csv --summary results/tables/audit_table2_chest3_resnet18_summary.csv \\
        --figure results/figures/audit_table2_chest3_resnet18.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, table: str) -> list[str]:
    if table not in plan.audit_tables:
        raise common.ParamsError(f"table {table!r} is not audited (audit.tables, audit enabled); audited: "
                                 f"{', '.join(plan.audit_tables) or 'none'}")
    return [f"tables.{table}", "attacks", "audit", "whitebox", "evaluation.batch_size", "seed", "training.threads"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table name (one of 'audit.tables')")
    p.add_argument("--audits", nargs="+", required=True, help="every audit record of the table's models")
    p.add_argument("--evals", nargs="+", required=True, help="the models' evaluation records, in row order")
    p.add_argument("--whitebox", nargs="*", default=[], help="their white-box records (when the table has some)")
    p.add_argument("--out", required=True, help="the audit table (.csv)")
    p.add_argument("--summary", required=True, help="each row's advantage over NA under the strongest attack (.csv)")
    p.add_argument("--figure", required=True, help="robust accuracy by threat model per row (.png)")


def run(job: common.Job) -> None:
    args, table = job.args, job.args.table
    view = job.view(keys(job.cfg, job.plan, table))
    models = [m.name for m in job.plan.table(table)]
    common.expect([Path(p).stem for p in args.evals], models, f"audit table {table}: evaluations")
    if args.whitebox:
        common.expect([Path(p).stem for p in args.whitebox], models, f"audit table {table}: white-box records")
    by_model: dict[str, list[str]] = {}
    for path in args.audits:
        by_model.setdefault(Path(path).parent.name, []).append(path)  # results/metrics/audit/<model>/<part>.json
    rows = [{"audit": by_model.get(m, []), "evaluation": e, "whitebox": args.whitebox[i] if args.whitebox else None}
            for i, (m, e) in enumerate(zip(models, args.evals))]
    from pipeline_src.audit_tables import write_audit_table

    with job.track("audit_table", table, view["tables"][table]["dataset"], tags={"table": f"audit_{table}"},
                   run_name=f"table/audit_{table}") as rec:
        for m, paths in by_model.items():
            for path in paths:
                rec.link(f"audit_run_id.{m}.{Path(path).stem}", path)
        write_audit_table(table, rows, view, args.out, args.figure, args.summary)
        for path in (args.out, args.summary, args.figure):
            rec.log_artifact(path, "audit")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.audit_table", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
