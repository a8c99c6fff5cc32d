"""`audit_craft` job (the audit, beyond the paper): one strong transfer set, by dataset and name: MI-FGSM or
DI-FGSM crafted on the dataset's attacker, or MI-FGSM through the ensemble surrogate (the mean of its members'
logits), on the audit's seeded subset of test images (docs/audit.md).

Example:
    python -m pipeline_src.stages.audit_craft --dataset skin4 --attack ens_mi_fgsm_eps8 \\
        --surrogates models/skin4_surrogate_resnet18_s1000.pt models/skin4_surrogate_vgg16_s1000.pt ... \\
        --test data/prepared/skin4/test.pt --out data/adversarial/skin4/audit_ens_mi_fgsm_eps8.pt \\
        --metrics results/metrics/audit/attacks/skin4/ens_mi_fgsm_eps8.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_src.config import AuditConfig
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common

KEYS = ["audit", "evaluation.batch_size", "seed", "training.threads"]


def surrogates(plan: Plan, dataset: str, attack: str) -> list[str]:
    """The model names an audit transfer set is crafted on: the attacker, or every ensemble member in order."""
    if attack not in plan.audit_transfer:
        raise common.ParamsError(f"no audit transfer attack {attack!r} (audit.transfer, audit enabled); known: "
                                 f"{', '.join(plan.audit_transfer) or 'none'}")
    if plan.cfg["audit"]["transfer"][attack].get("surrogate", "surrogate") == "ensemble":
        return list(plan.members[dataset])
    return [plan.surrogate(dataset).name]


def keys(cfg: dict, plan: Plan, name: str) -> list[str]:
    return KEYS


def config(view: dict, plan: Plan, name: str) -> AuditConfig:
    return AuditConfig.from_params(view)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--attack", required=True, help="audit transfer attack (a key of 'audit.transfer')")
    p.add_argument("--surrogates", nargs="+", required=True, help="the attacker, or the ensemble's members in order")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--out", required=True, help="the adversarial subset (.pt, uint8, with its test indices)")
    p.add_argument("--metrics", required=True, help="settings and success rates (.json)")


def run(job: common.Job) -> None:
    args = job.args
    job.plan.dataset(args.dataset)
    cfg = config(job.view(KEYS), job.plan, args.attack)
    common.expect([Path(p).stem for p in args.surrogates], surrogates(job.plan, args.dataset, args.attack),
                  f"audit set {args.dataset}/{args.attack}: surrogates")
    from pipeline_src.audit import craft_transfer_set
    from pipeline_src.io import write_json

    with job.track("audit_craft", f"{args.dataset}/{args.attack}", args.dataset, {"attack": args.attack},
                   {"attack": args.attack}, run_name=f"audit_craft/{args.dataset}/{args.attack}") as rec:
        for i, path in enumerate(args.surrogates):
            rec.link(f"surrogate_run_id.{i}", path)
        metrics = craft_transfer_set(cfg, args.attack, args.surrogates, args.test, args.out)
        write_json(args.metrics, {"attack": args.attack, **metrics})
        rec.log_metrics(metrics)
        rec.output("adversarial", args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.audit_craft", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
