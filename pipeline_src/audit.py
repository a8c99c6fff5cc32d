"""The audit's jobs (issue 16, docs/audit.md): what a reviewer runs before believing a robustness claim.

Two kinds of job, both on the same seeded subset of test images (``whitebox.subset_indices``: with equal
``max_images`` and seed the audit and the white-box stage attack the same images):

* :func:`craft_transfer_set` (one per dataset and transfer attack): MI-FGSM or DI-FGSM crafted on the surrogate,
  or MI-FGSM through the ensemble surrogate, stored as uint8 like the paper's transfer sets, plus the indices of
  the images it covers;
* :func:`audit_model` (one per classifier, or one per classifier and part): the transfer sets evaluated on the
  classifier, Square Attack and AutoAttack against the classifier itself, and the unbounded PGD (on the margin
  loss, ``strong_attacks.margin_pgd``) of the sanity check. The record has the format of ``evaluate.score`` (accuracy, correct counts and per-image flags per
  column) plus ``attacks`` (effective settings and success rates) and ``test_indices``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline_src.attacks import _model_device, success_rate, to_uint8
from pipeline_src.config import AuditConfig, AuditTransfer
from pipeline_src.sanity import UNBOUNDED_COLUMN
from pipeline_src.strong_attacks import di_fgsm, diversity_draws, margin_pgd, mi_fgsm
from pipeline_src.whitebox import subset_indices

log = logging.getLogger(__name__)

PARTS = ("transfer", "square", "autoattack", "unbounded")


def _frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():  # gradients w.r.t. the input only
        p.requires_grad_(False)
    return model.eval()


def run_transfer_attack(model: nn.Module, x: Tensor, y: Tensor, attack: AuditTransfer, *, seed: int = 0,
                        batch_size: int = 256) -> Tensor:
    """One audit transfer attack over a data set in batches (eps and stepsize converted from the 0-255 scale).

    DI-FGSM's transforms are drawn once from ``seed`` for the whole set, so the result does not depend on
    ``batch_size``; MI-FGSM is deterministic."""
    eps, step = attack.eps / 255.0, attack.stepsize / 255.0
    device = _model_device(model, x.device)
    draws = None
    if attack.method == "di_fgsm":
        draws = diversity_draws(attack.steps, x.shape[-1], p=attack.p, resize_rate=attack.resize_rate,
                                generator=torch.Generator().manual_seed(seed))
    elif attack.method != "mi_fgsm":
        raise ValueError(f"unknown audit transfer method {attack.method!r}; expected mi_fgsm or di_fgsm")
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        if attack.method == "mi_fgsm":
            xa = mi_fgsm(model, xb, yb, eps, steps=attack.steps, step_size=step, decay=attack.decay)
        else:
            xa = di_fgsm(model, xb, yb, eps, steps=attack.steps, step_size=step, resize_rate=attack.resize_rate,
                         decay=attack.decay, draws=draws)
        out.append(xa.to(x.device))
    return torch.cat(out) if out else x.clone()


def _load_subset(test_path: str | Path, max_images: int, seed: int):
    from pipeline_src.data.prepare import load_split  # local: keeps the module importable without data code

    test = load_split(test_path)
    idx = subset_indices(len(test.labels), max_images, seed)
    return test, idx, test.images[idx], test.labels[idx]


def craft_transfer_set(cfg: AuditConfig, attack_name: str, surrogate_paths: Sequence[str | Path],
                       test_path: str | Path, out_path: str | Path) -> dict:
    """Craft ``attack_name`` on the surrogate (one checkpoint) or the ensemble (the members' checkpoints, in
    ``cfg.ensemble_archs`` order) and save {'images' (uint8), 'labels', 'classes', 'test_indices'}."""
    from pipeline_src.checkpoints import load_model
    from pipeline_src.io import save_torch
    from pipeline_src.models.ensemble import load_ensemble

    attack = cfg.transfer_by_name(attack_name)
    if attack.surrogate == "surrogate" and len(surrogate_paths) != 1:
        raise ValueError(f"audit attack {attack_name!r} is crafted on the surrogate: give one checkpoint, "
                         f"got {len(surrogate_paths)}")
    torch.set_num_threads(cfg.threads)
    model = _frozen(load_model(surrogate_paths[0]) if attack.surrogate == "surrogate"
                    else load_ensemble(surrogate_paths))
    test, idx, images, labels = _load_subset(test_path, cfg.max_images, cfg.seed)
    x_adv = run_transfer_attack(model, images.float().div(255.0), labels, attack, seed=cfg.seed,
                                batch_size=cfg.batch_size)
    adv_u8 = to_uint8(x_adv)
    save_torch({"images": adv_u8, "labels": labels, "classes": test.classes, "test_indices": idx}, out_path)
    delta = adv_u8.float().sub(images.float()).flatten(1)
    metrics = {"method": attack.method, "surrogate": attack.surrogate, "eps": attack.eps, "steps": attack.steps,
               "stepsize": attack.stepsize, "decay": attack.decay, "n": len(labels),
               "success_rate_float": success_rate(model, x_adv, labels, cfg.batch_size),
               "success_rate_uint8": success_rate(model, adv_u8, labels, cfg.batch_size),
               "max_linf_255": float(delta.abs().max()) if len(labels) else 0.0}
    if attack.method == "di_fgsm":
        metrics |= {"p": attack.p, "resize_rate": attack.resize_rate}
    log.info("%s: %s", out_path, metrics)
    return metrics


def audit_model(cfg: AuditConfig, model_path: str | Path, test_path: str | Path,
                transfer_sets: Mapping[str, str | Path] | None = None, parts: Sequence[str] = PARTS) -> dict:
    """The audit record of one classifier: ``parts`` of transfer (evaluate ``transfer_sets``), square,
    autoattack and unbounded, all on the seeded subset. Every adversarial image is scored after uint8
    quantisation, like the transfer and white-box sets."""
    from pipeline_src.autoattack import autoattack
    from pipeline_src.checkpoints import load_checkpoint
    from pipeline_src.evaluate import score
    from pipeline_src.io import load_torch
    from pipeline_src.square import square_attack

    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown audit part(s) {unknown}; expected some of {list(PARTS)}")
    torch.set_num_threads(cfg.threads)
    ckpt = load_checkpoint(model_path)
    model = _frozen(ckpt.model)
    test, idx, images, labels = _load_subset(test_path, cfg.max_images, cfg.seed)
    x = images.float().div(255.0)
    sets: dict[str, Tensor] = {"clean": images}
    stats: dict[str, dict] = {}
    if "transfer" in parts:
        for name, path in (transfer_sets or {}).items():
            adv = load_torch(path)
            if not (torch.equal(adv["test_indices"], idx) and torch.equal(adv["labels"], labels)):
                raise ValueError(f"transfer set {path} covers other images than this audit (audit.max_images "
                                 f"{cfg.max_images}, seed {cfg.seed}): re-run its craft job")
            sets[name] = adv["images"]
    if "square" in parts:
        generator = torch.Generator().manual_seed(cfg.seed)  # one stream through the batches (drawn on the CPU)
        device = _model_device(model, x.device)
        results = [square_attack(model, x[i:i + cfg.batch_size].to(device), labels[i:i + cfg.batch_size].to(device),
                                 cfg.square_eps / 255.0, cfg.square_queries, p_init=cfg.square_p_init,
                                 generator=generator)
                   for i in range(0, len(labels), cfg.batch_size)]
        adv = torch.cat([r.adversarial.cpu() for r in results]) if results else x.clone()
        success = torch.cat([r.success.cpu() for r in results]) if results else torch.zeros(0, dtype=torch.bool)
        queries = torch.cat([r.queries.cpu() for r in results]) if results else torch.zeros(0)
        sets[cfg.square_column] = to_uint8(adv)
        stats[cfg.square_column] = {"eps": cfg.square_eps, "queries": cfg.square_queries, "p_init": cfg.square_p_init,
                                    "success_rate_float": float(success.float().mean()) if len(labels) else 0.0,
                                    "mean_queries_of_successes": float(queries[success].mean())
                                    if bool(success.any()) else float("nan")}
    if "autoattack" in parts:
        for column, eps in cfg.autoattack_columns().items():
            result = autoattack(model, x, labels, eps / 255.0, version=cfg.autoattack_version, seed=cfg.seed,
                                batch_size=cfg.batch_size)
            sets[column] = to_uint8(result.adversarial)
            stats[column] = {"eps": eps, "version": cfg.autoattack_version, "attacks": list(result.attacks),
                             "target_classes": result.targets,
                             "success_rate_float": float(result.success.float().mean()) if len(labels) else 0.0}
    if "unbounded" in parts:  # on the margin loss: cross-entropy's gradient vanishes on confident images
        eps = min(1.0, cfg.unbounded_eps / 255.0)
        device = _model_device(model, x.device)
        x_adv = torch.cat([margin_pgd(model, x[i:i + cfg.batch_size].to(device), labels[i:i + cfg.batch_size].to(device),
                                      eps, cfg.unbounded_steps).cpu()
                           for i in range(0, len(labels), cfg.batch_size)]) if len(labels) else x.clone()
        sets[UNBOUNDED_COLUMN] = to_uint8(x_adv)
        stats[UNBOUNDED_COLUMN] = {"method": "margin_pgd", "eps": cfg.unbounded_eps, "steps": cfg.unbounded_steps,
                                   "stepsize": 2.5 * cfg.unbounded_eps / cfg.unbounded_steps,
                                   "success_rate_float": success_rate(model, x_adv, labels, cfg.batch_size)}
    record = score(model, ckpt.config, sets, labels, cfg.batch_size, what="audit accuracy")
    record["attacks"] = stats
    record["test_indices"] = idx.tolist()
    return record
