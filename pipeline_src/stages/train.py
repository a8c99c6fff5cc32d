"""`train` job: one classifier of the plan, by name: L = L_c + lambda_n L_n + lambda_a L_a, checkpointed
every epoch (a killed job resumes where it stopped).

Example (the command Snakemake and dvc.yaml run):
    python -m pipeline_src.stages.train --model skin4_resnet18_ln1_la10_s0 \\
        --train data/prepared/skin4/train.pt --test data/prepared/skin4/test.pt \\
        --out models/skin4_resnet18_ln1_la10_s0.pt --metrics results/metrics/train/skin4_resnet18_ln1_la10_s0.json \\
        --curve results/plots/train/skin4_resnet18_ln1_la10_s0.csv
The model name carries dataset, arch, lambdas and seed; every hyperparameter comes from the run's params.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipeline_src.config import TrainConfig
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common

CURVE_COLUMNS = ("epoch", "lr", "loss", "train_accuracy", "test_accuracy")


def keys(cfg: dict, plan: Plan, model: str) -> list[str]:
    """What a training reads: the training section, its dataset's flips override, the model options of its arch."""
    job = plan.model(model)
    out = ["training", f"model.decoder_stage.{job.arch}", "model.decoder_activation", "model.pretrained"]
    if "flips" in cfg["datasets"][job.dataset]:
        out.append(f"datasets.{job.dataset}.flips")
    vgg = ["model.vgg_head", "model.vgg_width", "model.vgg_batch_norm", "model.vgg_feature"]
    return out + (vgg if job.arch == "vgg16" else [])


def config(view: dict, plan: Plan, model: str) -> TrainConfig:
    job = plan.model(model)
    return TrainConfig.from_params(view, job.arch, job.lambda_n, job.lambda_a, job.seed, dataset=job.dataset)


def curve_csv(history: list[dict]) -> str:
    """The training curve as DVC plots read it: one row per epoch."""
    lines = [",".join(CURVE_COLUMNS)]
    lines += [",".join(repr(float(r[c])) if c != "epoch" else str(r[c]) for c in CURVE_COLUMNS) for r in history]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (a table row or the surrogate)")
    p.add_argument("--train", required=True, help="prepared training split (.pt)")
    p.add_argument("--test", required=True, help="prepared test split (.pt): accuracy after every epoch")
    p.add_argument("--out", required=True, help="the trained model (.pt)")
    p.add_argument("--metrics", required=True, help="config and per-epoch history (.json)")
    p.add_argument("--curve", required=True, help="training curve (.csv, a DVC plot)")
    p.add_argument("--checkpoint", default=None, help="per-epoch checkpoint (default: OUT.ckpt)")


def run(job: common.Job) -> None:
    args, name = job.args, job.args.model
    cfg = config(job.view(keys(job.cfg, job.plan, name)), job.plan, name)
    dataset = job.plan.model(name).dataset
    from pipeline_src.data.split import load_split
    from pipeline_src.io import write_json, write_text
    from pipeline_src.train import train_model

    summary_path = Path(args.train).parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    tags = {"model": name, "data_sha256_train": summary.get("train", {}).get("sha256", "unknown"),
            "data_sha256_test": summary.get("test", {}).get("sha256", "unknown")}
    with job.track("train", name, dataset, dataclasses.asdict(cfg), tags, run_name=name) as rec:
        history = train_model(cfg, load_split(args.train), load_split(args.test), args.out, args.checkpoint,
                              on_epoch=rec.log_epoch)
        record = {"config": dataclasses.asdict(cfg), "history": history}
        write_json(args.metrics, record)
        write_text(args.curve, curve_csv(history))
        rec.output("model", args.out)
        rec.log_artifact(args.out, "checkpoint")
        if job.cfg["tracking"]["log_models"]:  # tracking never changes a result: not one of the job's keys
            rec.log_model(args.out, {"train": args.train, "test": args.test})
        rec.log_dict({"model": name, "dataset": dataset, **record}, "resolved_config.json")


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.train", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
