"""Square Attack, L_inf (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a query-based black-box attack.

It needs no surrogate and no gradient, only the model's logits, so a defence that merely hides or breaks
the gradient (gradient masking) does not stop it: when it succeeds far more often than the gradient attacks,
the gradient attacks were not measuring robustness (``sanity.masking_check``).

Algorithm (random search on the margin loss  m(x) = z_y(x) - max_{j != y} z_j(x)):

1. start at vertical stripes: x_0 = clip(x + eps * s), s in {-1, +1} drawn per (image, channel, column);
2. each iteration: a square window of side s_t (shrinking with the schedule p_t, s_t = round(sqrt(p_t * H * W)))
   at a random position gets a new value x +- eps per channel (the same window for the whole batch); keep the
   candidate for every image whose margin went down or that is misclassified;
3. stop after ``n_queries`` iterations or once every image is misclassified (m <= 0).

The code mirrors the authors' implementation as shipped in AutoAttack (``pyautoattack.square.SquareAttack``,
Linf, margin loss, one restart) draw for draw, with an explicit generator instead of the global one, so that
with the same seed both give the same images (tests/test_audit.py, with ``reference_window=True``). One
difference by default: the reference draws the window's corner from [0, H - s), never H - s, so the last row and
column of the image keep their initial stripe for the whole run (15 of 64 pixels at 8 px, 63 of 1,024 at 32 px;
on a linear model this leaves adversarials that exist unfound). We draw from [0, H - s] (the paper's uniform
position), with the same number of random draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline_src.attacks import _check_inputs, _check_logits

__all__ = ["SquareResult", "p_schedule", "square_attack"]

_MIN, _MAX = 0.0, 1.0
# (last iteration of the bracket on the 10,000-query scale, divisor of p_init) -- the authors' schedule
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_schedule(iteration: int, p_init: float, n_queries: int, rescale: bool = True) -> float:
    """Fraction of the image the square covers at ``iteration``: p_init halved at fixed points of a
    10,000-query run; ``rescale`` maps the budget onto that scale (the authors' code; AutoAttack turns it off
    for its fixed 5,000 queries)."""
    it = int(iteration / n_queries * 10000) if rescale else iteration
    for last, divisor in _SCHEDULE:
        if it <= last:
            return p_init / divisor
    return p_init / 512


@dataclass(frozen=True)
class SquareResult:
    """Output of :func:`square_attack`: the adversarial images, whether each is misclassified, and the number
    of model queries each image used (1 for the start; 0 for images the model already got wrong)."""
    adversarial: Tensor
    success: Tensor
    queries: Tensor


def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    _check_logits(logits, x.shape[0])
    rows = torch.arange(x.shape[0], device=logits.device)
    correct = logits[rows, y].clone()
    others = logits.clone()
    others[rows, y] = -float("inf")
    return correct - others.max(dim=1).values


def _sign(shape: list[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.sign(2 * torch.rand(shape, generator=generator) - 1).to(device)


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform on {0, ..., high - 1}, written as the reference writes it (one uniform draw)."""
    return int((high * torch.rand([1], generator=generator)).long())


@torch.no_grad()
def square_attack(model: nn.Module, x: Tensor, y: Tensor, eps: float, n_queries: int = 1000, *,
                  p_init: float = 0.8, rescale_schedule: bool = True, reference_window: bool = False,
                  generator: torch.Generator | None = None) -> SquareResult:
    """Untargeted L_inf Square Attack with the margin loss, one restart.

    Only images the model classifies correctly are attacked (the others are returned unchanged), and an image
    the search did not fool is returned clean, as in the reference. All random
    numbers are drawn on the CPU from ``generator``, so a seed gives the same result on any device; the
    result depends on the batch (one window per iteration is shared by the batch, as in the reference).

    Args:
        model: classifier mapping [0, 1] images to logits, in eval mode; only its outputs are used.
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        eps: L_inf budget on the [0, 1] scale (8/255 in the audit).
        n_queries: iterations (= model queries per image, plus one for the start).
        p_init: initial fraction of the image covered by the square (AutoAttack at CIFAR's 32 px: 0.8; the
            paper's ImageNet setting: 0.05).
        rescale_schedule: stretch the p schedule over ``n_queries`` (see :func:`p_schedule`).
        reference_window: draw the window's corner from [0, H - s) as the reference code does (the last row and
            column never change) instead of [0, H - s].
        generator: randomness (seed it).

    Returns:
        :class:`SquareResult`; the adversarial images lie in the eps-ball around ``x`` and in [0, 1].
    """
    _check_inputs(x, y)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number on the [0, 1] scale, got {eps}")
    if n_queries < 0:
        raise ValueError(f"n_queries must be >= 0, got {n_queries}")
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    x = x.detach()
    n = x.shape[0]
    adversarial = x.clone()
    queries = torch.zeros(n, device=x.device)
    if n == 0:
        return SquareResult(adversarial, torch.zeros(0, dtype=torch.bool, device=x.device), queries)
    todo = (model(x).argmax(dim=1) == y).nonzero().flatten()  # only the images the model gets right
    if len(todo):
        adv, q = _attack(model, x[todo], y[todo], eps, n_queries, p_init, rescale_schedule, reference_window,
                         generator)
        fooled = model(adv).argmax(dim=1) != y[todo]
        # as the reference: an image the search did not fool is returned clean
        adversarial[todo[fooled]] = adv[fooled]
        queries[todo] = q
    success = model(adversarial).argmax(dim=1) != y
    return SquareResult(adversarial, success, queries)


def _attack(model: nn.Module, x: Tensor, y: Tensor, eps: float, n_queries: int, p_init: float, rescale: bool,
            reference_window: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One run on images the model gets right (``SquareAttack.attack_single_run``, Linf)."""
    c, h, w = x.shape[1:]
    n_features = c * h * w
    x_best = torch.clamp(x + eps * _sign([x.shape[0], c, 1, w], generator, x.device), _MIN, _MAX)
    margin_min = _margin(model, x_best, y)
    queries = torch.ones(x.shape[0], device=x.device)
    if bool((margin_min < 0).all()):
        return x_best, queries
    for i in range(n_queries):
        idx = (margin_min > 0).nonzero().flatten()
        x_curr, x_best_curr, y_curr, margin_curr = x[idx], x_best[idx], y[idx], margin_min[idx]
        p = p_schedule(i, p_init, n_queries, rescale)
        s = min(max(int(round(math.sqrt(p * n_features / c))), 1), h, w)
        last = 0 if reference_window else 1  # corners 0 .. H - s - 1 (reference) or 0 .. H - s
        vh = _randint(h - s + last, generator)
        vw = _randint(w - s + last, generator)
        deltas = torch.zeros([c, h, w], device=x.device)
        deltas[:, vh:vh + s, vw:vw + s] = 2.0 * eps * _sign([c, 1, 1], generator, x.device)
        x_new = x_best_curr + deltas
        x_new = torch.min(torch.max(x_new, x_curr - eps), x_curr + eps)
        x_new = torch.clamp(x_new, _MIN, _MAX)
        margin = _margin(model, x_new, y_curr)
        # keep the candidate where the margin improved or the image is already misclassified
        improved = (margin < margin_curr) | (margin <= 0)
        margin_min[idx] = torch.where(improved, margin, margin_curr)
        x_best[idx] = torch.where(improved.view(-1, 1, 1, 1), x_new, x_best_curr)
        queries[idx] += 1
        if bool((margin_min <= 0).all()):
            break
    return x_best, queries
