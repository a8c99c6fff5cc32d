"""`prepare` job: one dataset, by name: obtain the raw images (generate, read a folder, or download), apply
the paper's subsampling rules, and store uint8 tensors once.

Example:
    python -m pipeline_src.stages.prepare --dataset skin4 --out_dir data/prepared/skin4
writes train.pt, test.pt and summary.json (per-class counts, sha256 of each split) into OUT_DIR.
"""
from __future__ import annotations

import argparse
import sys

from pipeline_src.config import DatasetSpec
from pipeline_src.plan import Plan
from pipeline_src.stages import _common as common


def keys(cfg: dict, plan: Plan, dataset: str) -> list[str]:
    plan.dataset(dataset)
    return ["seed", f"datasets.{dataset}"]


def config(view: dict, plan: Plan, dataset: str) -> DatasetSpec:
    return DatasetSpec.from_params(view["datasets"][dataset], view["seed"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (a key of 'datasets')")
    p.add_argument("--out_dir", required=True, help="folder for train.pt, test.pt and summary.json")


def run(job: common.Job) -> None:
    spec = config(job.view(keys(job.cfg, job.plan, job.args.dataset)), job.plan, job.args.dataset)
    from pipeline_src.data.prepare import prepare

    prepare(spec, job.args.out_dir)


def main(argv: list[str] | None = None) -> int:
    return common.main("pipeline_src.stages.prepare", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
