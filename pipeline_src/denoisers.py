"""`train-denoiser` and `evaluate-denoised` stages: Table 4's input denoisers and their combinations.

    Reformer:  min  MSE( R(x'), x )                          x' = noisy copy of a clean training image
    HGD*:      min  1/N sum_i | g(D(x'_i)) - g(x_i) |_1      g = the protected classifier's high-level
                                                               features (frozen), D = the DUNET

The reformer knows nothing of the classifier (one per dataset); an HGD denoiser is guided by the
classifier it protects (one per protected classifier). HGD* (the paper's asterisk): Liao et al. train
on adversarial examples; we train on noisy copies (uniform noise as in L_n by default), so that no part
of the defence sees an adversarial example. Evaluation reuses ``evaluate.evaluate_model`` with the
denoiser wrapped in front of the classifier, so the JSON has the same fields as every evaluation.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline_src.checkpoints import load_checkpoint
from pipeline_src.combined_plan import DenoiserConfig
from pipeline_src.data.split import Split
from pipeline_src.device import compute_device, is_gpu, setup_gpu
from pipeline_src.evaluate import evaluate_model
from pipeline_src.io import load_torch, save_torch
from pipeline_src.losses import uniform_noise
from pipeline_src.models.input_denoisers import DenoisedClassifier, DenoiserSpec, build_denoiser

log = logging.getLogger(__name__)
NOISES = ("gaussian", "uniform")


def add_noise(x: torch.Tensor, noise: str, level: float, generator: torch.Generator) -> torch.Tensor:
    if noise == "uniform":
        return uniform_noise(x, level, generator)
    if noise == "gaussian":
        return (x + level * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp_(0.0, 1.0)
    raise ValueError(f"unknown noise {noise!r}; allowed: {', '.join(NOISES)}")


def reformer_loss(denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """MagNet's reconstruction loss: mean squared error to the clean image."""
    return F.mse_loss(denoised, clean)


def guide_features(classifier: torch.nn.Module, x: torch.Tensor, guide: str) -> torch.Tensor:
    """The high-level representation HGD matches: f(x) (final conv stage) or the logits."""
    return classifier(x) if guide == "logits" else classifier.outputs(x, reconstruct=False).features


def hgd_loss(classifier: torch.nn.Module, denoised: torch.Tensor, clean_features: torch.Tensor,
             guide: str) -> torch.Tensor:
    """Liao et al.'s loss: L1 distance between the classifier's features of the denoised and the clean
    image, summed over features and averaged over the batch."""
    diff = guide_features(classifier, denoised, guide) - clean_features
    return diff.abs().flatten(1).sum(1).mean()


def train_denoiser(cfg: DenoiserConfig, train: Split, test: Split, out_path: str | Path,
                   classifier_path: str | Path | None = None,
                   on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train one denoiser (Adam, as MagNet and HGD) and save it with its spec; return the per-epoch history.

    For HGD, ``classifier_path`` is the protected classifier: frozen (eval mode, no gradient to its
    weights), it only supplies the loss.
    """
    on_epoch = on_epoch or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    spec = DenoiserSpec(kind=cfg.kind, in_channels=train.channels, width=cfg.width, depth=cfg.depth)
    # On a GPU the denoiser, the frozen classifier and each batch live there (fp32: the denoiser is small);
    # the noise is drawn on the CPU from the seeded generator either way. On the CPU every .to() is a no-op.
    device = compute_device()
    if is_gpu(device):
        setup_gpu()
    denoiser = build_denoiser(spec).to(device)
    classifier = None
    if cfg.kind == "hgd":
        if classifier_path is None:
            raise ValueError("an HGD denoiser needs the classifier it protects (--classifier)")
        classifier = load_checkpoint(classifier_path, device).model.eval().requires_grad_(False)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=cfg.lr)

    def targets(split: Split) -> torch.Tensor:
        """Clean images (reformer) or their classifier features, computed once: the classifier is frozen."""
        if classifier is None:
            return split.float_images().to(device)
        with torch.no_grad():
            return torch.cat([guide_features(classifier, split.float_images(slice(i, i + 256)).to(device), cfg.guide)
                              for i in range(0, len(split.labels), 256)])

    def loss_of(x_noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        denoised = denoiser(x_noisy)
        return reformer_loss(denoised, target) if classifier is None else hgd_loss(classifier, denoised, target, cfg.guide)

    train_targets, test_targets = targets(train), targets(test)
    test_noisy = add_noise(test.float_images(), cfg.noise, cfg.noise_level,
                           torch.Generator().manual_seed(cfg.seed + 1)).to(device)  # one fixed noisy test set
    history: list[dict] = []
    n = len(train.labels)
    for epoch in range(cfg.epochs):
        denoiser.train()
        t0, total, batches = time.perf_counter(), 0.0, 0
        order = torch.randperm(n, generator=generator)
        starts = [i for i in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - i) > 1]  # BN needs 2
        for i in tqdm(starts, desc=f"{cfg.kind} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=None):
            idx = order[i:i + cfg.batch_size]
            x_noisy = add_noise(train.float_images(idx), cfg.noise, cfg.noise_level, generator).to(device)
            loss = loss_of(x_noisy, train_targets[idx.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        denoiser.eval()
        with torch.no_grad():
            test_loss = sum(float(loss_of(test_noisy[i:i + 256], test_targets[i:i + 256])) * len(test_noisy[i:i + 256])
                            for i in range(0, len(test_noisy), 256)) / max(len(test_noisy), 1)
        # No wall-clock times in the record: the same params must give byte-identical metrics.
        record = {"epoch": epoch + 1, "loss": total / max(batches, 1), "test_loss": test_loss}
        history.append(record)
        on_epoch(record)
        log.info("epoch %d (%.1f s): loss %.5f, noisy test loss %.5f", epoch + 1, time.perf_counter() - t0,
                 record["loss"], test_loss)
    save_torch({"model": {k: v.cpu() for k, v in denoiser.state_dict().items()}, "spec": spec.to_dict(), "config": dataclasses.asdict(cfg),
                "history": history}, out_path)
    return history


def load_denoiser(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A trained denoiser in eval mode, and the config it was trained with."""
    blob = load_torch(path)
    denoiser = build_denoiser(DenoiserSpec(**blob["spec"]))
    denoiser.load_state_dict(blob["model"])
    return denoiser.eval(), blob["config"]


def evaluate_denoised(denoiser_path: str | Path, model_path: str | Path, test_path: str | Path,
                      adversarial: dict[str, str | Path], batch_size: int = 256, threads: int | None = None) -> dict:
    """``evaluate.evaluate_model`` of the classifier with the denoiser in front of it."""
    denoiser, config = load_denoiser(denoiser_path)
    result = evaluate_model(model_path, test_path, adversarial, batch_size,
                            wrap=lambda classifier: DenoisedClassifier(denoiser, classifier), threads=threads)
    return {**result, "denoiser_kind": config["kind"]}
