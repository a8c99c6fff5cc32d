"""`train` stage: one classifier per configuration, with L = L_c + lambda_n L_n + lambda_a L_a.

Reads top to bottom: set-up, resume, the epoch loop (noisy copies, one forward pass for clean and
noisy images, the three losses), a checkpoint after every epoch, the final model.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline_src.config import TrainConfig, config_dict, config_hash
from pipeline_src.data.split import Split
from pipeline_src.device import autocast, compute_device, is_gpu, normalise_u8, place_model, setup_gpu
from pipeline_src.evaluate import accuracy
from pipeline_src.io import load_torch, save_torch
from pipeline_src.losses import (classification_loss, neighbor_loss, reconstruction_loss, total_loss,
                                 uniform_noise)
from pipeline_src.models import DenoisingClassifier, ModelSpec, build_model
from pipeline_src.recipe import build_scheduler, random_flips

log = logging.getLogger(__name__)


def model_spec(cfg: TrainConfig, train: Split) -> ModelSpec:
    return ModelSpec(arch=cfg.arch, num_classes=len(train.classes), in_channels=train.channels,
                     image_size=int(train.images.shape[-1]), decoder_stage=cfg.decoder_stage,
                     decoder_activation=cfg.decoder_activation, pretrained=cfg.pretrained, vgg_feature=cfg.vgg_feature,
                     **{k: v for k, v in (("vgg_head", cfg.vgg_head), ("vgg_width", cfg.vgg_width),
                                          ("vgg_batch_norm", cfg.vgg_batch_norm)) if v is not None})


def train_step(model: DenoisingClassifier, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Losses of one batch (not yet backpropagated). x in [0,1], [N, C, H, W]."""
    if not (cfg.defended or cfg.undefended_noisy_ce):  # the NA classifier: plain cross-entropy on clean images
        logits = model(x)
        l_c = classification_loss(logits, y)
        return {"loss": l_c, "loss_c": l_c, "logits": logits}
    k, n = cfg.noisy_copies, x.shape[0]
    x_noisy = uniform_noise(x.repeat(k, 1, 1, 1), cfg.noise_sigma, generator)  # redrawn every step
    # One forward pass for clean and noisy images: the same BN statistics, half the kernel launches.
    out = model.outputs(torch.cat([x, x_noisy]), reconstruct=cfg.lambda_a > 0)
    l_c = classification_loss(out.logits, y.repeat(k + 1))
    l_n = neighbor_loss(out.features[:n], out.features[n:], cfg.neighbor_distance, cfg.neighbor_detach_clean)
    losses = {"loss_c": l_c, "loss_n": l_n, "logits": out.logits[:n]}
    l_a = torch.zeros((), device=x.device)
    if out.reconstruction is not None:
        target = x if cfg.decoder_activation == "sigmoid" else x * 2 - 1  # tanh decoder: target in [-1, 1]
        recon_clean = out.reconstruction[:n] if cfg.reconstruct == "both" else None
        l_a = reconstruction_loss(target, recon_clean, out.reconstruction[n:], cfg.reconstruction_distance)
        losses["loss_a"] = l_a
    losses["loss"] = total_loss(l_c, l_n, l_a, cfg.lambda_n, cfg.lambda_a)
    return losses


def _checkpoint(model, optimizer, scheduler, generator, epoch: int, cfg: TrainConfig, history: list,
                noise_generator: torch.Generator | None = None) -> dict:
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
            "config_hash": config_hash(cfg), "history": history}
    if noise_generator is not None:  # GPU only: the noise is drawn on the device
        ckpt["cuda_generator"] = noise_generator.get_state()
        ckpt["cuda_rng"] = torch.cuda.get_rng_state()
    return ckpt


def train_model(cfg: TrainConfig, train: Split, test: Split, out_path: str | Path,
                checkpoint_path: str | Path | None = None,
                on_epoch: Callable[[dict], None] | None = None, checkpoint_every_s: float = 0.0) -> list[dict]:
    """Train, checkpointing to ``checkpoint_path``; resume from it when it matches ``cfg``.

    A checkpoint is written after an epoch when ``checkpoint_every_s`` seconds have passed since the last
    one (or the start): 0 = after every epoch. Never after the last epoch: the model file replaces it at
    once. Resuming from any checkpoint gives the same bytes, so the interval changes no output.

    ``on_epoch(record)`` is called with every epoch's record as soon as it exists (the tracker logs it
    live); after a resume it is first called with the restored epochs, so the caller sees them all.
    """
    on_epoch = on_epoch or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # weight initialisation
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and noise
    spec = model_spec(cfg, train)
    device = compute_device()
    gpu = is_gpu(device)
    model = build_model(spec)
    noise_generator = None  # on the GPU the noise is drawn there, from its own generator
    if gpu:
        setup_gpu()
        model = place_model(model, device)
        noise_generator = torch.Generator(device=device).manual_seed(cfg.seed)
        train_images, train_labels = train.images.to(device), train.labels.to(device)  # uint8 stays uint8
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = sum(1 for i in range(0, len(train.labels), cfg.batch_size)
                          if min(cfg.batch_size, len(train.labels) - i) > 1)  # as batch_starts below
    scheduler, per_step = build_scheduler(optimizer, cfg.lr_schedule, cfg.epochs, steps_per_epoch,
                                          cfg.lr_milestones, cfg.lr_gamma)
    checkpoint_path = Path(checkpoint_path or f"{out_path}.ckpt")
    history: list[dict] = []
    start = 0
    if checkpoint_path.exists():
        ckpt = load_torch(checkpoint_path)
        if ckpt.get("config_hash") == config_hash(cfg):
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            if gpu and "cuda_generator" in ckpt:
                noise_generator.set_state(ckpt["cuda_generator"])
                torch.cuda.set_rng_state(ckpt["cuda_rng"])
            start, history = ckpt["epoch"], ckpt["history"]
            log.info("resuming %s after epoch %d", out_path, start)
            for record in history:
                on_epoch(record)
        else:
            log.info("ignoring checkpoint %s: it belongs to a different configuration", checkpoint_path)

    step_model = model
    if gpu and cfg.compile:  # compiled forward passes; the state dict keeps its keys (same module)
        model.forward = torch.compile(model.forward)
        model.outputs = torch.compile(model.outputs)
    n = len(train.labels)
    last_checkpoint = time.monotonic()
    for epoch in range(start, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "loss_c": 0.0, "loss_n": 0.0, "loss_a": 0.0}
        correct, seen, batches = 0, 0, 0
        device_sums: dict[str, torch.Tensor] = {}
        device_correct: torch.Tensor | int = 0
        order = torch.randperm(n, generator=generator)
        batch_starts = [i for i in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - i) > 1]  # BN needs 2
        for i in tqdm(batch_starts, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=None):
            idx = order[i:i + cfg.batch_size]
            if gpu:
                idx_d = idx.to(device, non_blocking=True)
                x, y = normalise_u8(train_images[idx_d]), train_labels[idx_d]
                x = random_flips(x, cfg.flips, generator)  # coins from the CPU generator, as on the CPU
                with autocast(device):
                    losses = train_step(step_model, x, y, cfg, noise_generator)
            else:
                x, y = train.float_images(idx), train.labels[idx]
                x = random_flips(x, cfg.flips, generator)  # augmentation (none by default: no draw)
                losses = train_step(model, x, y, cfg, generator)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            if per_step:  # one-cycle and cosine schedules move every batch
                scheduler.step()
            right = (losses["logits"].detach().argmax(1) == y).sum()
            if gpu:  # accumulate on the device: no host sync per step, one .item() per epoch below
                for key in sums:
                    if key in losses:
                        device_sums[key] = device_sums.get(key, 0) + losses[key].detach().float()
                device_correct = device_correct + right
            else:
                for key in sums:
                    if key in losses:
                        sums[key] += float(losses[key].detach())
                correct += int(right)
            seen += len(y)
            batches += 1
        if gpu:
            sums.update({k: float(v.item()) for k, v in device_sums.items()})
            correct = int(device_correct.item()) if seen else 0
        if not per_step:
            scheduler.step()
        model.eval()
        uses_noise = cfg.defended or cfg.undefended_noisy_ce
        logged = ["loss", "loss_c"] + (["loss_n"] if uses_noise else []) + (["loss_a"] if cfg.lambda_a > 0 else [])
        # No wall-clock times in the record: the same params must give byte-identical metrics.
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_accuracy": correct / seen,
                  "test_accuracy": accuracy(model, test.images, test.labels),
                  **{k: sums[k] / batches for k in logged}}
        history.append(record)
        on_epoch(record)
        log.info("epoch %d (%.1f s): %s", epoch + 1, time.perf_counter() - t0,
                 {k: round(v, 4) for k, v in record.items() if isinstance(v, float)})
        if epoch + 1 < cfg.epochs and time.monotonic() - last_checkpoint >= checkpoint_every_s:
            save_torch(_checkpoint(model, optimizer, scheduler, generator, epoch + 1, cfg, history, noise_generator),
                       checkpoint_path)
            last_checkpoint = time.monotonic()

    state = model.state_dict() if not gpu else {k: v.cpu() for k, v in model.state_dict().items()}
    save_torch({"model": state, "spec": spec.to_dict(), "config": config_dict(cfg),
                "classes": train.classes, "history": history}, out_path)
    checkpoint_path.unlink(missing_ok=True)
    return history
