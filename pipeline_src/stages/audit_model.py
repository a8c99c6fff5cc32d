"""`audit_model` job (the audit, beyond the paper): one part of one classifier's audit, by model name and part,
on the audit's seeded subset: `transfer` (the strong transfer sets evaluated), `square` (Square Attack against
the model itself), `autoattack` (AutoAttack, standard version) or `unbounded` (margin PGD over the whole image
box, a sanity check: it must reach 0%). One job per part, so the slow parts run side by side.

Example:
    python -m pipeline_src.stages.audit_model --model chest3_resnet18_ln1_la10_s0 --part autoattack \\
        --weights models/chest3_resnet18_ln1_la10_s0.pt --test data/prepared/chest3/test.pt \\
        --out results/metrics/audit/chest3_resnet18_ln1_la10_s0/autoattack.json
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.config import AuditConfig
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common

PARTS = ("transfer", "square", "autoattack", "unbounded")
KEYS = ["audit", "evaluation.batch_size", "seed", "training.threads"]


def keys(cfg: dict, plan: Plan, name: str) -> list[str]:
    model = name.rsplit("/", 1)[0]  # <model>/<part>
    if model not in {m.name for m in plan.audit_models()}:
        raise common.ParamsError(f"model {model!r} is not in an audited table (audit.tables, audit enabled)")
    return KEYS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (a row of an audited table)")
    p.add_argument("--part", required=True, choices=PARTS, help="which part of the audit")
    p.add_argument("--weights", required=True, help="the trained model (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--transfer", nargs="*", default=[], metavar="ATTACK=PATH",
                   help="part transfer: the audit's transfer sets of the model's dataset")
    p.add_argument("--out", required=True, help="the part's audit record (.json)")


def run(job: common.Job) -> None:
    args = job.args
    cfg = AuditConfig.from_params(job.view(keys(job.cfg, job.plan, f"{args.model}/{args.part}")))
    dataset = job.plan.model(args.model).dataset
    transfer = common.pairs(args.transfer, "--transfer")
    common.expect(transfer, job.plan.audit_transfer if args.part == "transfer" else [],
                  f"audit of {args.model} ({args.part}): transfer sets")
    from pipeline_src.audit import audit_model
    from pipeline_src.io import write_json

    with job.track("audit_model", f"{args.model}/{args.part}", dataset, {"model": args.model, "part": args.part},
                   {"model": args.model, "part": args.part}, run_name=f"audit/{args.model}/{args.part}") as rec:
        rec.link("train_run_id", args.weights)
        for attack, path in transfer.items():
            rec.link(f"audit_craft_run_id.{attack}", path)
        record = audit_model(cfg, args.weights, args.test, transfer, parts=(args.part,))
        write_json(args.out, {"model": args.model, "dataset": dataset, "part": args.part, **record})
        rec.log_metrics({f"accuracy_{k}": v for k, v in record["accuracy"].items()})
        rec.output("audit", args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.audit_model", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
