"""`whitebox` job (beyond the paper): one model, by name, attacked through its own logits (FGSM, I-FGSM,
PGD), on a seeded subset of its test images.

Example:
    python -m pipeline_src.stages.whitebox --model chest3_resnet18_ln1_la0_s0 \\
        --weights models/chest3_resnet18_ln1_la0_s0.pt --test data/prepared/chest3/test.pt \\
        --out results/metrics/whitebox/chest3_resnet18_ln1_la0_s0.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline_src.config import WhiteboxConfig
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, model: str) -> list[str]:
    plan.model(model)
    return ["seed", "whitebox.max_images", "whitebox.attacks", "evaluation.batch_size", "training.threads"]


def config(view: dict, plan: Plan, model: str) -> WhiteboxConfig:
    return WhiteboxConfig.from_params(view, plan.whitebox)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--weights", required=True, help="the trained model (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--out", required=True, help="white-box evaluation record (.json)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.model
    cfg = config(job.view(keys(job.cfg, job.plan, name)), job.plan, name)
    dataset = job.plan.model(name).dataset
    from pipeline_src.io import write_json
    from pipeline_src.whitebox import whitebox_model

    params = {"model": name, **{k: (",".join(v) if isinstance(v, tuple) else v)
                                for k, v in dataclasses.asdict(cfg).items()}}
    with job.track("whitebox", name, dataset, params, {"model": name}, run_name=f"whitebox/{name}") as rec:
        rec.link("train_run_id", args.weights)
        result = whitebox_model(cfg, args.weights, args.test)
        write_json(args.out, {"model": name, "dataset": dataset, **result})
        rec.log_metrics({f"accuracy_{k}": v for k, v in result["accuracy"].items()})
        rec.output("evaluation", args.out)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.whitebox", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
