"""`train_denoiser` job (Table 4): one input denoiser, by name: MagNet's Reformer (one per dataset) or HGD*
(one per protected classifier, guided by that classifier's features).

Example:
    python -m pipeline_src.stages.train_denoiser --denoiser skin4_resnet18_ln0_la0_s0_hgd \\
        --train data/prepared/skin4/train.pt --test data/prepared/skin4/test.pt \\
        --classifier models/skin4_resnet18_ln0_la0_s0.pt \\
        --out models/denoisers/skin4_resnet18_ln0_la0_s0_hgd.pt --metrics results/metrics/train_denoisers/skin4_resnet18_ln0_la0_s0_hgd.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline_src.combined_plan import DenoiserConfig, DenoiserJob
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def denoiser(plan: Plan, name: str) -> DenoiserJob:
    if name not in plan.denoisers:
        raise common.ParamsError(f"no denoiser {name!r} in the parameters (combined_tables' rows); known: "
                                 f"{', '.join(plan.denoisers) or 'none'}")
    return plan.denoisers[name]


def keys(cfg: dict, plan: Plan, name: str) -> list[str]:
    return [f"denoisers.{denoiser(plan, name).kind}", "training.threads"]


def config(view: dict, plan: Plan, name: str) -> DenoiserConfig:
    job = denoiser(plan, name)
    return DenoiserConfig.from_params(view, job.kind, job.seed)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--denoiser", required=True, help="denoiser name")
    p.add_argument("--train", required=True, help="prepared training split (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt)")
    p.add_argument("--classifier", default=None, help="hgd: the classifier it protects (.pt)")
    p.add_argument("--out", required=True, help="the trained denoiser (.pt)")
    p.add_argument("--metrics", required=True, help="config and per-epoch history (.json)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.denoiser
    cfg = config(job.view(keys(job.cfg, job.plan, name)), job.plan, name)
    d = denoiser(job.plan, name)
    if (d.protects is not None) != (args.classifier is not None):
        raise ValueError(f"denoiser {name}: --classifier is required for kind hgd and not allowed for a reformer")
    from pipeline_src.data.split import load_split
    from pipeline_src.denoisers import train_denoiser
    from pipeline_src.io import write_json

    tags = {"model": name, "denoiser": cfg.kind, "protects": d.protects or ""}
    # its own stage: searches for classifier trainings (stage "train") never meet a denoiser
    with job.track("train_denoiser", name, d.dataset, dataclasses.asdict(cfg), tags, run_name=name) as rec:
        if args.classifier:
            rec.link("classifier_run_id", args.classifier)
        history = train_denoiser(cfg, load_split(args.train), load_split(args.test), args.out, args.classifier,
                                 on_epoch=rec.log_epoch)
        record = {"config": dataclasses.asdict(cfg), "protects": d.protects, "history": history}
        write_json(args.metrics, record)
        rec.output("denoiser", args.out)
        rec.log_artifact(args.out, "checkpoint")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.train_denoiser", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
