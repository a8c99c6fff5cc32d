"""Stronger transfer attacks for the audit (issue 16): MI-FGSM and DI-FGSM.

The paper transfers FGSM and I-FGSM from one ResNet18. Two attacks designed to transfer better are the
standard next step a reviewer asks for:

* MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018): I-FGSM whose step follows
  the sign of an accumulated, L1-normalised gradient  g_{t+1} = mu * g_t + grad_t / ||grad_t||_1,
  x_{t+1} = Proj(x_t + alpha * sign(g_{t+1})). Matches ART's ``MomentumIterativeMethod``.
* DI-FGSM (Xie et al., "Improving Transferability of Adversarial Examples with Input Diversity", CVPR 2019):
  I-FGSM whose gradient is taken through a random transform T(x) applied with probability p: resize to
  rnd x rnd (rnd uniform in [W, W')) with nearest-neighbour interpolation and zero-pad at a random position to
  W' x W' (the paper: 299 -> [299, 330) -> 330). With ``decay > 0`` it is M-DI2-FGSM (both ideas).

Conventions are those of :mod:`pipeline_src.attacks`: images in [0, 1], eps on the [0, 1] scale, the model
applies its own normalisation and is in eval mode, only the input is differentiated, randomness comes from
an explicit ``torch.Generator``.

Determinism and batching: DI-FGSM draws ONE transform per step (as the reference code does: one per batch and
iteration), and the draws come from :func:`diversity_draws` before any batch is attacked, so the whole data
set sees the same sequence of transforms and the result does not depend on the batch size.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline_src.attacks import _check_inputs, _check_logits, _input_grad

__all__ = ["DiversityDraw", "di_fgsm", "diversity_draws", "diversity_size", "input_diversity", "l1_normalise",
           "margin_pgd", "mi_fgsm"]

_MIN, _MAX = 0.0, 1.0


def _check_budget(eps: float, steps: int, step_size: float) -> None:
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number on the [0, 1] scale, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"step_size must be finite and non-negative, got {step_size}")


def _step(x: Tensor, x_adv: Tensor, direction: Tensor, eps: float, step_size: float) -> Tensor:
    """x_adv + a * sign(direction), projected on the eps-ball around x and clipped to [0, 1] (as attacks.py)."""
    x_adv = x_adv + step_size * direction.sign()
    x_adv = x + torch.clamp(x_adv - x, -eps, eps)
    return torch.clamp(x_adv, _MIN, _MAX)


def l1_normalise(grad: Tensor) -> Tensor:
    """grad / ||grad||_1 per sample (Dong et al., eq. 6); an all-zero gradient stays zero."""
    norm = grad.abs().flatten(1).sum(dim=1).view(-1, *([1] * (grad.ndim - 1)))
    return grad / norm.clamp_min(torch.finfo(grad.dtype).tiny)


# --------------------------------------------------------------------------- MI-FGSM


def mi_fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10, step_size: float | None = None,
            decay: float = 1.0) -> Tensor:
    """Momentum iterative FGSM, L_inf, untargeted (Dong et al. 2018).

    Each of ``steps`` iterations: g <- decay * g + grad / ||grad||_1 (grad of the summed cross-entropy w.r.t.
    the input), x_adv <- clip_[0,1](Proj_eps(x_adv + step_size * sign(g))). ``decay = 0`` is I-FGSM.

    Args:
        model: classifier mapping [0, 1] images to logits, in eval mode (a surrogate or an ensemble).
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        eps: L_inf budget on the [0, 1] scale.
        steps: iterations (Dong et al.: 10).
        step_size: per-step size; default eps / steps (Dong et al.: alpha = eps / T).
        decay: momentum factor mu (Dong et al.: 1.0).

    Returns:
        Adversarial images within the eps-ball around ``x`` and within [0, 1].
    """
    _check_inputs(x, y)
    step_size = eps / steps if step_size is None and steps > 0 else step_size
    _check_budget(eps, steps, step_size)
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay must be finite and non-negative, got {decay}")
    x = x.detach().clone()
    x_adv, momentum = x, torch.zeros_like(x)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y)
        with torch.no_grad():
            momentum = decay * momentum + l1_normalise(grad)
            x_adv = _step(x, x_adv, momentum, eps, step_size)
    return x_adv.detach()


# --------------------------------------------------------------------------- DI-FGSM


@dataclass(frozen=True)
class DiversityDraw:
    """One draw of the input-diversity transform: resize to ``size`` x ``size``, pad to the output size with
    ``top`` rows above and ``left`` columns to the left; ``apply`` False = the identity this step."""
    apply: bool
    size: int
    top: int
    left: int


def diversity_size(image_size: int, resize_rate: float) -> int:
    """Side W' of the padded image: floor(W * resize_rate), at least W + 1 (so that rnd has a range)."""
    if not (math.isfinite(resize_rate) and resize_rate > 1):
        raise ValueError(f"resize_rate must be > 1 (the paper: 330/299 = 1.10), got {resize_rate}")
    return max(int(math.floor(image_size * resize_rate + 1e-9)), image_size + 1)


def diversity_draws(steps: int, image_size: int, *, p: float = 0.5, resize_rate: float = 1.1,
                    generator: torch.Generator | None = None) -> list[DiversityDraw]:
    """The transforms of ``steps`` DI-FGSM iterations, drawn on the CPU from ``generator``.

    Per step, always four draws in this order (so that the stream does not depend on ``p``'s outcome):
    u ~ U[0, 1) (apply iff u < p), rnd ~ U{W, ..., W'-1}, top ~ U{0, ..., W'-rnd}, left ~ U{0, ..., W'-rnd}.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"diversity probability p must be in [0, 1], got {p}")
    out = diversity_size(image_size, resize_rate)
    draws = []
    for _ in range(steps):
        u = float(torch.rand(1, generator=generator))
        size = int(torch.randint(image_size, out, (1,), generator=generator))
        top = int(torch.randint(0, out - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, out - size + 1, (1,), generator=generator))
        draws.append(DiversityDraw(apply=u < p, size=size, top=top, left=left))
    return draws


def input_diversity(x: Tensor, draw: DiversityDraw, out_size: int) -> Tensor:
    """T(x): nearest-neighbour resize of (N, C, W, W) images to ``draw.size`` and zero padding to ``out_size``.

    Nearest neighbour as in the reference code (TF's NEAREST_NEIGHBOR): output pixel i reads input pixel
    floor(i * W / rnd), computed in integers and applied by indexing, so that it is differentiable (each
    input pixel receives the summed gradient of its copies) and exact.
    """
    if not draw.apply:
        return x
    h, w = x.shape[-2:]
    if h != w:
        raise ValueError(f"input diversity expects square images, got {h}x{w}")
    if not (h <= draw.size <= out_size and 0 <= draw.top <= out_size - draw.size
            and 0 <= draw.left <= out_size - draw.size):
        raise ValueError(f"diversity draw {draw} does not fit images of {h} px padded to {out_size}")
    idx = torch.div(torch.arange(draw.size, device=x.device) * h, draw.size, rounding_mode="floor")
    resized = x.index_select(-2, idx).index_select(-1, idx)
    pad = (draw.left, out_size - draw.size - draw.left, draw.top, out_size - draw.size - draw.top)
    return F.pad(resized, pad, value=0.0)


def di_fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10, step_size: float | None = None,
            *, p: float = 0.5, resize_rate: float = 1.1, decay: float = 0.0,
            generator: torch.Generator | None = None, draws: Sequence[DiversityDraw] | None = None) -> Tensor:
    """Diverse-inputs iterative FGSM, L_inf, untargeted (Xie et al. 2019).

    Each iteration t: grad = d CE(model(T_t(x_adv)), y) / d x_adv with T_t the t-th draw of
    :func:`diversity_draws`; x_adv <- clip_[0,1](Proj_eps(x_adv + step_size * sign(g))) with g = grad
    (``decay = 0``, DI2-FGSM) or the momentum of :func:`mi_fgsm` (``decay > 0``, M-DI2-FGSM).

    The model must accept the padded size W' (the project's classifiers pool adaptively).

    Args:
        model, x, y, eps, steps, step_size: as :func:`mi_fgsm` (step default eps / steps).
        p: probability of applying the transform at a step (Xie et al.: 0.5).
        resize_rate: W' / W (Xie et al.: 330 / 299 = 1.10).
        decay: momentum factor (0 = plain DI2-FGSM).
        generator: randomness of the draws (ignored when ``draws`` is given).
        draws: the transforms drawn beforehand, one per step (e.g. once for a whole data set).

    Returns:
        Adversarial images within the eps-ball around ``x`` and within [0, 1].
    """
    _check_inputs(x, y)
    step_size = eps / steps if step_size is None and steps > 0 else step_size
    _check_budget(eps, steps, step_size)
    size = x.shape[-1]
    out = diversity_size(size, resize_rate)
    if draws is None:
        draws = diversity_draws(steps, size, p=p, resize_rate=resize_rate, generator=generator)
    if len(draws) != steps:
        raise ValueError(f"{len(draws)} diversity draws for {steps} steps")
    x = x.detach().clone()
    x_adv, momentum = x, torch.zeros_like(x)
    for draw in draws:
        grad = _input_grad(_Diverse(model, draw, out), x_adv, y)
        with torch.no_grad():
            momentum = decay * momentum + (l1_normalise(grad) if decay > 0 else grad)
            x_adv = _step(x, x_adv, momentum, eps, step_size)
    return x_adv.detach()


class _Diverse(nn.Module):
    """model(T(x)) for one draw (so that attacks.py's gradient helper can be reused)."""

    def __init__(self, model: nn.Module, draw: DiversityDraw, out_size: int) -> None:
        super().__init__()
        self.model, self.draw, self.out_size = model, draw, out_size

    def forward(self, x: Tensor) -> Tensor:
        return self.model(input_diversity(x, self.draw, self.out_size))


# --------------------------------------------------------------------------- PGD on the margin loss


def _margin_grad(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    """Gradient of sum_i (max_{j != y_i} z_j - z_{y_i}) w.r.t. the input only."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        _check_logits(logits, x_adv.shape[0])
        rows = torch.arange(x_adv.shape[0], device=logits.device)
        others = logits.clone()
        others[rows, y] = -float("inf")
        loss = (others.max(dim=1).values - logits[rows, y]).sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
    return grad


def margin_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 100,
               step_size: float | None = None) -> Tensor:
    """L_inf PGD from ``x`` (no random start) ascending the margin max_{j != y} z_j - z_y (Carlini & Wagner's
    f6 on the logits) instead of the cross-entropy.

    Why not cross-entropy: on a confident model the softmax saturates in float32 (1 - p_y < 1e-7 rounds to 0 once
    the logit margin exceeds about 16), the cross-entropy's gradient is then exactly zero and sign-gradient steps
    stop. The margin's gradient does not vanish. The audit's unbounded attack uses it (docs/audit.md: on the
    default NA ResNet18, cross-entropy PGD at eps 255 left one of 32 images correct, this none).

    Args:
        model, x, y: as :func:`mi_fgsm`.
        eps: L_inf budget on the [0, 1] scale (1.0 = the whole box).
        steps: iterations.
        step_size: default 2.5 * eps / steps (Madry et al.'s rule, as ``attacks.pgd``).

    Returns:
        Adversarial images within the eps-ball around ``x`` and within [0, 1].
    """
    _check_inputs(x, y)
    step_size = 2.5 * eps / steps if step_size is None and steps > 0 else step_size
    _check_budget(eps, steps, step_size)
    x = x.detach().clone()
    x_adv = x
    for _ in range(steps):
        grad = _margin_grad(model, x_adv, y)
        with torch.no_grad():
            x_adv = _step(x, x_adv, grad, eps, step_size)
    return x_adv.detach()
