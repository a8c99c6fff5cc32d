"""`attack_figure` job: one dataset's clean, adversarial and amplified-perturbation images per attack.

Example:
    python -m pipeline_src.stages.attack_figure --dataset skin4 --test data/prepared/skin4/test.pt \\
        --adversarial fgsm_eps4=data/adversarial/skin4/fgsm_eps4.pt ... --out results/figures/skin4_attacks.png
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, dataset: str) -> list[str]:
    plan.dataset(dataset)
    return []  # pictures of files: what they show changes only with the files themselves


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--adversarial", nargs="+", required=True, metavar="ATTACK=PATH", help="adversarial test sets")
    p.add_argument("--out", required=True, help="the figure (.png)")


def run(job: common.Job) -> None:
    args = job.args
    job.plan.dataset(args.dataset)
    adversarial = common.pairs(args.adversarial, "--adversarial")
    from pipeline_src.figures import attack_figure

    with job.track("figures", f"{args.dataset}_attacks", args.dataset, run_name=f"figures/{args.dataset}_attacks") as rec:
        attack_figure(args.dataset, args.test, adversarial, args.out)
        rec.log_artifact(args.out, "figures")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.attack_figure", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
