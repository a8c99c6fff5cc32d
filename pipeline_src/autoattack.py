"""AutoAttack (Croce & Hein, ICML 2020), standard version, L_inf, through the ``pyautoattack`` package.

``pyautoattack`` is the authors' code (github.com/fra31/auto-attack) packaged for PyPI; its ``standard``
version runs, on the images still classified correctly after the previous one:

    APGD-CE (100 iterations) -> APGD-T (targeted DLR loss, 9 target classes) -> FAB-T (9 targets) -> Square (5,000 queries)

The standard version was designed for 10 or more classes. With K < 10 classes there are only K - 1 targets, so
both targeted attacks use K - 1 (the package would index past the logits otherwise), and the targeted DLR loss
needs the 4th-largest logit: with K = 3 (chest3) APGD-T is replaced by untargeted APGD-DLR (of the ``plus``
version), with K = 2 it is dropped. ``plan`` returns what actually runs; docs/audit.md says why.

The package seeds torch's global generator; it runs inside ``torch.random.fork_rng`` so that the caller's
random state is left as it was.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline_src.attacks import _check_inputs, _check_logits, _model_device

__all__ = ["AutoAttackResult", "autoattack", "plan"]

log = logging.getLogger(__name__)
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
STANDARD_TARGETS = 9


@dataclass(frozen=True)
class AutoAttackResult:
    """The adversarial images (the clean image where no attack succeeded), per-image success (misclassified
    after the attack, including images misclassified clean), the attacks run and the number of targets."""
    adversarial: Tensor
    success: Tensor
    attacks: tuple[str, ...]
    targets: int


def plan(num_classes: int, version: str = "standard") -> tuple[tuple[str, ...], int]:
    """(attacks in order, number of target classes) of ``version`` for a ``num_classes``-way classifier."""
    if version != "standard":
        raise ValueError(f"AutoAttack version {version!r} is not supported; use 'standard'")
    if num_classes < 2:
        raise ValueError(f"AutoAttack needs at least 2 classes, got {num_classes}")
    targets = min(STANDARD_TARGETS, num_classes - 1)
    attacks = list(STANDARD)
    if num_classes == 3:  # the targeted DLR loss reads the 4th-largest logit
        attacks[attacks.index("apgd-t")] = "apgd-dlr"
    elif num_classes == 2:  # no DLR loss at all (it reads the 3rd-largest logit)
        attacks.remove("apgd-t")
    return tuple(attacks), targets


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, version: str = "standard", seed: int = 0,
               batch_size: int = 256) -> AutoAttackResult:
    """Run AutoAttack (L_inf, ``eps`` on the [0, 1] scale) on images ``x`` with labels ``y``.

    Args:
        model: classifier mapping [0, 1] images to logits, in eval mode.
        x: clean images in [0, 1], shape (N, C, H, W); y: labels (N,).
        eps: L_inf budget on the [0, 1] scale.
        version: 'standard' (adapted to fewer than 10 classes, see :func:`plan`).
        seed: the package's seed (every attack is seeded with it).
        batch_size: images per batch inside the package.
    """
    from pyautoattack import AutoAttack  # local: a heavy optional import only the audit needs

    _check_inputs(x, y)
    if not (math.isfinite(eps) and 0 < eps <= 1):
        raise ValueError(f"eps must be in (0, 1] on the [0, 1] scale, got {eps}")
    device = _model_device(model, x.device)
    n = x.shape[0]
    if n == 0:
        return AutoAttackResult(x.clone(), torch.zeros(0, dtype=torch.bool), (), 0)
    with torch.no_grad():
        logits = model(x[:1].to(device))
    _check_logits(logits, 1)
    attacks, targets = plan(logits.shape[1], version)
    adversary = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed, device=device)
    adversary.attacks_to_run = list(attacks)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    adversary.verbose = False
    with torch.random.fork_rng(devices=[]):
        x_adv, _ = adversary.run_standard_evaluation(x.detach().to(device), y.to(device), batch_size=batch_size)
    x_adv = x_adv.to(x.device)
    with torch.no_grad():
        pred = torch.cat([model(x_adv[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, n, batch_size)])
    success = pred != y.cpu()
    log.info("AutoAttack (%s, eps %.4f, %d targets): robust accuracy %.4f", "+".join(attacks), eps, targets,
             1 - float(success.float().mean()))
    return AutoAttackResult(x_adv.detach(), success, attacks, targets)
