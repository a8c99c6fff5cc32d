"""`attack` stage: craft one adversarial test set on the surrogate and store it as uint8 images.

uint8 is what an attacker would save and send; rounding to 1/255 can undo part of a very small
C&W perturbation, so the success rate is reported both before and after rounding.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline_src.attacks import run_attack, to_uint8
from pipeline_src.checkpoints import load_model
from pipeline_src.config import AttackConfig
from pipeline_src.data.split import load_split
from pipeline_src.device import compute_device, inference_model
from pipeline_src.evaluate import accuracy, predict
from pipeline_src.io import save_torch

log = logging.getLogger(__name__)


def craft(cfg: AttackConfig, surrogate_path: str | Path, test_path: str | Path, out_path: str | Path) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = inference_model(load_model(surrogate_path), compute_device())  # GPU: bf16 inside, fp32 logits
    for p in model.parameters():  # gradients w.r.t. the input only
        p.requires_grad_(False)
    test = load_split(test_path)
    x = test.float_images()
    eps = None if cfg.eps is None else cfg.eps / 255.0
    x_adv, stats = run_attack(model, x, test.labels, cfg.method, eps=eps, steps=cfg.steps,
                              binary_search_steps=cfg.binary_search_steps, stepsize=cfg.stepsize,
                              confidence=cfg.confidence, initial_const=cfg.initial_const,
                              abort_early=cfg.abort_early, batch_size=cfg.batch_size, progress=True)
    adv_u8 = to_uint8(x_adv)
    save_torch({"images": adv_u8, "labels": test.labels, "classes": test.classes}, out_path)
    delta = adv_u8.float().sub(test.images.float()).div(255.0).flatten(1)
    # One forward pass on the stored uint8 set serves both of its metrics (the same inputs, as
    # accuracy() and success_rate() would feed them, so the same predictions and the same numbers).
    adv_pred = predict(model, adv_u8, cfg.batch_size)
    metrics = {
        **{k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in stats.items()},
        "method": cfg.method,
        "n": len(test.labels),
        "surrogate_clean_accuracy": accuracy(model, test.images, test.labels, cfg.batch_size),
        "surrogate_adversarial_accuracy": float((adv_pred == test.labels).float().mean()),  # = accuracy()
        "success_rate": int((adv_pred != test.labels).sum()) / len(test.labels),  # = success_rate()
        "mean_linf_255": float(delta.abs().amax(1).mean() * 255),
        "mean_l2_uint8": float(delta.norm(dim=1).mean()),
    }
    log.info("%s: %s", out_path, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return metrics
