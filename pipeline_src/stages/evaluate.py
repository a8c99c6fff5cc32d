"""`evaluate` job: one model, by name, on the clean test set and on every adversarial set of its dataset.
Accuracy is over ALL test images (as in the paper); per-image correctness flags feed the statistics.

Example:
    python -m pipeline_src.stages.evaluate --model skin4_resnet18_ln1_la10_s0 \\
        --weights models/skin4_resnet18_ln1_la10_s0.pt --test data/prepared/skin4/test.pt \\
        --adversarial fgsm_eps4=data/adversarial/skin4/fgsm_eps4.pt ... \\
        --out results/metrics/eval/skin4_resnet18_ln1_la10_s0.json
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, model: str) -> list[str]:
    plan.model(model)
    return ["evaluation.batch_size", "training.threads"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--weights", required=True, help="the trained model (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--adversarial", nargs="*", default=[], metavar="ATTACK=PATH",
                   help="adversarial test sets, one per attack of the dataset, in column order")
    p.add_argument("--out", required=True, help="evaluation record (.json)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.model
    view = job.view(keys(job.cfg, job.plan, name))
    dataset = job.plan.model(name).dataset
    adversarial = common.pairs(args.adversarial, "--adversarial")
    common.expect(adversarial, job.plan.attacks, f"evaluate {name}: attacks")
    from pipeline_src.evaluate import evaluate_model
    from pipeline_src.io import write_json

    batch = view["evaluation"]["batch_size"]
    with job.track("evaluate", name, dataset, {"model": name, "batch_size": batch, "attacks": ",".join(adversarial)},
                   {"model": name}, run_name=f"eval/{name}") as rec:
        rec.link("train_run_id", args.weights)
        for attack, path in adversarial.items():
            rec.link(f"attack_run_id.{attack}", path)
        result = evaluate_model(args.weights, args.test, adversarial, batch, threads=view["training"]["threads"])
        write_json(args.out, {"model": name, "dataset": dataset, **result})
        rec.log_metrics({f"accuracy_{k}": v for k, v in result["accuracy"].items()})
        rec.output("evaluation", args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.evaluate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
