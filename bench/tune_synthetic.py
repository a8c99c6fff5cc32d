"""Tuning harness for the embedded synthetic datasets (pipeline_src/data/synthetic.py).

Trains undefended torchvision ResNet18s from scratch at the default profile's sizes and reports
clean accuracy, the majority-class rate, per-class accuracy, white-box FGSM accuracy and the
*transfer* of FGSM (eps 8/255) crafted on model A (seed 1) to models B (seeds 0 and 2).
The target: clean accuracy roughly 75-88% on both datasets and a clear transfer drop (15+ points).

    python bench/tune_synthetic.py [--datasets skin4 chest3] [--b-seeds 0 2] [--data-seed 0]

Self-contained on purpose (own split code) so it can run while the rest of the pipeline changes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline_src.data.synthetic import generate  # noqa: E402
from pipeline_src.data.subsample import subsample_split  # noqa: E402

log = logging.getLogger("tune_synthetic")

# The default profile (params.yaml): generation counts, caps and split.
PROFILES = {
    "skin4": dict(source="synthetic-skin4",
                  counts={"MEL": 223, "NV": 1341, "BCC": 103, "BKL": 220}, caps={"NV": 300},
                  test_fraction=0.1667),
    "chest3": dict(source="synthetic-chest3",
                   counts={"Normal": 266, "Lung Opacity": 180, "No Lung Opacity / Not Normal": 355},
                   caps={}, train=600, test=170),
}


class Wrapped(nn.Module):
    """[0,1] images -> normalised (mean 0.5, std 0.5), grayscale repeated to 3 channels."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = resnet18(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.net((x - 0.5) / 0.5)


def load(name: str, size: int, data_seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    prof = PROFILES[name]
    t0 = time.perf_counter()
    x, y, classes = generate(prof["source"], prof["counts"], size, data_seed)
    log.info("%s: generated %d images at %d px in %.2f s", name, len(y), size, time.perf_counter() - t0)
    # The pipeline's own rules (pipeline_src.data.subsample), so tuning sees exactly the default split.
    tr, te = subsample_split([classes[i] for i in y.tolist()], classes, prof["caps"], seed=data_seed,
                             test_fraction=prof.get("test_fraction"), train_count=prof.get("train"),
                             test_count=prof.get("test"))
    xf = x.float() / 255
    return xf[tr], y[tr], xf[te], y[te], classes


def train(x: torch.Tensor, y: torch.Tensor, k: int, seed: int, epochs: int) -> nn.Module:
    torch.manual_seed(seed)
    model = Wrapped(k)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            if min(64, len(y) - i) < 2:   # batch norm needs 2 samples (the pipeline skips such a batch too)
                continue
            b = perm[i:i + 64]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    out = []
    for i in range(0, len(x), 256):
        xb = x[i:i + 256].clone().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i:i + 256])
        (grad,) = torch.autograd.grad(loss, xb)
        out.append((xb + eps * grad.sign()).clamp(0, 1).detach())
    return torch.cat(out)


def run(name: str, size: int, data_seed: int, a_seed: int, b_seeds: list[int], epochs: int, eps: float,
        easy_probe: bool = False) -> dict:
    xtr, ytr, xte, yte, classes = load(name, size, data_seed)
    k = len(classes)
    counts = torch.bincount(yte, minlength=k)
    res: dict = {"dataset": name, "train": len(ytr), "test": len(yte),
                 "majority": round(float(counts.max()) / len(yte), 3), "models": {}}
    models = {}
    for seed in [a_seed, *b_seeds]:
        t0 = time.perf_counter()
        m = train(xtr, ytr, k, seed, epochs)
        models[seed] = m
        pred = predict(m, xte)
        per_class = {c: round(float((pred[yte == i] == i).float().mean()), 3) for i, c in enumerate(classes)}
        white = float((predict(m, fgsm(m, xte, yte, eps)) == yte).float().mean())
        res["models"][seed] = {"clean": round(float((pred == yte).float().mean()), 3), "per_class": per_class,
                               "fgsm_whitebox": round(white, 3), "train_s": round(time.perf_counter() - t0, 1)}
        log.info("%s seed %d: %s", name, seed, res["models"][seed])
    if easy_probe:  # diagnostic: are the full-strength cues learned at all? (cue strength fixed at 1)
        import pipeline_src.data.synthetic as syn
        attr = "_SKIN_CUE" if name == "skin4" else "_CHEST_CUE"
        saved = getattr(syn, attr)
        setattr(syn, attr, (1.0, 1.0))
        try:
            xe, ye, _ = generate(PROFILES[name]["source"], {c: 50 for c in classes}, size, data_seed + 777)
        finally:
            setattr(syn, attr, saved)
        for seed, m in models.items():
            res["models"][seed]["easy_probe"] = round(float((predict(m, xe.float() / 255) == ye).float().mean()), 3)
    x_adv = fgsm(models[a_seed], xte, yte, eps)
    for seed in b_seeds:
        acc = float((predict(models[seed], x_adv) == yte).float().mean())
        r = res["models"][seed]
        r["transfer_from_a"] = round(acc, 3)
        r["transfer_drop"] = round(r["clean"] - acc, 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--a-seed", type=int, default=1)
    ap.add_argument("--b-seeds", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cue", type=float, nargs=2, metavar=("LO", "HI"),
                    help="override the cue-strength range of the generator (tuning experiments)")
    ap.add_argument("--easy-probe", action="store_true", help="also test on cue strength 1 (diagnostic)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.cue:
        import pipeline_src.data.synthetic as syn
        syn._SKIN_CUE = syn._CHEST_CUE = tuple(args.cue)
    results = [run(d, args.size, args.data_seed, args.a_seed, args.b_seeds, args.epochs, args.eps, args.easy_probe)
               for d in args.datasets]
    for r in results:
        log.info("%s: train %d test %d majority %.3f", r["dataset"], r["train"], r["test"], r["majority"])
        for seed, m in r["models"].items():
            log.info("  seed %d clean %.3f whitebox-FGSM %.3f transfer %s drop %s easy %s per-class %s", seed,
                     m["clean"], m["fgsm_whitebox"], m.get("transfer_from_a", "-"), m.get("transfer_drop", "-"),
                     m.get("easy_probe", "-"), m["per_class"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
