"""What logging one classifier as an MLflow model costs (``pipeline_src.mlflow_models.log_classifier``).

    python bench/log_model_cost.py [--rounds 3] [--size 32]

For the default models (ResNet18; VGG16 at the CPU default's half width), untrained: export with
``torch.export`` + writing the MLflow model (pt2, signature, input example, requirements) into a fresh sqlite
store, against copying the same checkpoint as a plain artifact (what a run logs without a model). Prints the
median seconds per model and the model folder's size. Reported, no goal: it decides whether ``log_model``
runs inside each training job or in one batched tracking step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline_src.io import save_torch  # noqa: E402
from pipeline_src.mlflow_models import log_classifier  # noqa: E402
from pipeline_src.models import ModelSpec, build_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as the workflow's jobs run
    from mlflow.tracking import MlflowClient

    specs = {"resnet18": ModelSpec("resnet18", 4, 3, args.size, "layer1"),
             "vgg16 (width 0.5)": ModelSpec("vgg16", 4, 3, args.size, "block2", vgg_width=0.5)}
    with tempfile.TemporaryDirectory(prefix="log_model_cost_") as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        client = MlflowClient(uri)
        exp = client.create_experiment("cost", artifact_location=(tmp / "artifacts").as_uri())
        t0 = time.perf_counter()
        client.create_run(exp)  # the store's first use (schema creation) is not the model's cost
        print(f"store created in {time.perf_counter() - t0:.1f} s")
        print("| model | parameters | checkpoint (MB) | log_classifier, median s (rounds) | plain log_artifact, s |")
        print("|---|---|---|---|---|")
        for label, spec in specs.items():
            model = build_model(spec).eval()
            ckpt = tmp / f"{spec.arch}.pt"
            save_torch({"model": model.state_dict()}, ckpt)
            logged, plain = [], []
            for _ in range(args.rounds):
                run_id = client.create_run(exp).info.run_id
                logged.append(log_classifier(model, run_id=run_id, tracking_uri=uri, channels=3,
                                             image_size=args.size, classes=list("abcd"), checkpoint=ckpt).seconds)
                t0 = time.perf_counter()
                client.log_artifact(run_id, str(ckpt))
                plain.append(time.perf_counter() - t0)
            n = sum(p.numel() for p in model.parameters())
            print(f"| {label} | {n / 1e6:.1f} M | {ckpt.stat().st_size / 1e6:.1f} | {statistics.median(logged):.1f} "
                  f"({', '.join(f'{s:.1f}' for s in logged)}) | {statistics.median(plain):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
