"""`attack` job: one adversarial test set, by dataset and attack name, crafted on the dataset's surrogate
only (black-box transfer) and stored as uint8, as an attacker would save images.

Example:
    python -m pipeline_src.stages.attack --dataset skin4 --attack ifgsm10_eps8 \\
        --surrogate models/skin4_surrogate_resnet18_s1000.pt --test data/prepared/skin4/test.pt \\
        --out data/adversarial/skin4/ifgsm10_eps8.pt --metrics results/metrics/attacks/skin4/ifgsm10_eps8.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pipeline_src.config import AttackConfig
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, attack: str) -> list[str]:
    plan.attack(attack)
    return [f"attacks.{attack}", "evaluation.batch_size", "seed", "training.threads"]


def config(view: dict, plan: Plan, attack: str) -> AttackConfig:
    return AttackConfig.from_params(view, attack)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--attack", required=True, help="attack name (a key of 'attacks')")
    p.add_argument("--surrogate", required=True, help="the attacker's model (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--out", required=True, help="adversarial test set (.pt, uint8)")
    p.add_argument("--metrics", required=True, help="success rates and perturbation sizes (.json)")


def run(job: common.Job) -> None:
    args = job.args
    job.plan.dataset(args.dataset)
    cfg = config(job.view(keys(job.cfg, job.plan, args.attack)), job.plan, args.attack)
    from pipeline_src.adversarial import craft
    from pipeline_src.io import write_json

    surrogate = Path(args.surrogate).stem
    params = {"attack": args.attack, **{k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}}
    with job.track("attack", f"{args.dataset}/{args.attack}", args.dataset, params,
                   {"attack": args.attack, "surrogate": surrogate}) as rec:
        rec.link("surrogate_run_id", args.surrogate)
        metrics = craft(cfg, args.surrogate, args.test, args.out)
        write_json(args.metrics, {"attack": args.attack, "config": dataclasses.asdict(cfg), **metrics})
        rec.log_metrics(metrics)
        rec.output("adversarial", args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.attack", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
