"""The paper's losses, equations (1)-(3).

    L_n = 1/N sum_i || f(x_i) - f(x'_i) ||                       (1)  neighbor loss
    L_a = 1/N sum_i ( ||x_i - x_hat_i||_2 + ||x_i - x_hat'_i||_2 )  (2)  reconstruction, target = clean x
    L   = L_c + lambda_n L_n + lambda_a L_a                         (3)  L_c: cross-entropy, clean and noisy

``distance`` chooses how a per-sample difference becomes a number:
  l2   the norm of the flattened difference, literally as written;
  rms  the same norm divided by sqrt(dim): unchanged by image or feature-map size, so lambda = 1
       means the same at 32 px and at 224 px (our default, see README);
  mse / mse_pooled  the authors' code: mean squared error (of globally pooled features for L_n).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x' = clip(x + U[-sigma, sigma]) per pixel, on the [0,1] scale."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype).mul_(2 * sigma).sub_(sigma)
    return (x + noise).clamp_(0.0, 1.0)


def per_sample_distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """Distance between matching rows of a and b (any trailing shape) -> [N]."""
    diff = (a - b).flatten(1)
    if distance == "l2":
        return diff.norm(dim=1)
    if distance == "rms":
        return diff.norm(dim=1) / math.sqrt(diff.shape[1])
    if distance == "mse":
        return diff.pow(2).mean(dim=1)
    raise ValueError(f"unknown distance {distance!r}; allowed: l2, rms, mse")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_c: cross-entropy averaged over every image of the batch (clean and noisy copies alike)."""
    return F.cross_entropy(logits, labels)


def neighbor_loss(f_clean: torch.Tensor, f_noisy: torch.Tensor, distance: str = "rms",
                  detach_clean: bool = False) -> torch.Tensor:
    """L_n, eq. (1). ``f_noisy`` may hold K noisy copies per clean image ([K*N, ...], copy-major)."""
    if detach_clean:  # authors' code: only the noisy branch is pulled towards the clean features
        f_clean = f_clean.detach()
    copies = f_noisy.shape[0] // f_clean.shape[0]
    f_clean = f_clean.repeat(copies, *([1] * (f_clean.dim() - 1)))
    if distance == "mse_pooled":
        f_clean, f_noisy, distance = f_clean.mean(dim=(2, 3)), f_noisy.mean(dim=(2, 3)), "mse"
    return per_sample_distance(f_clean, f_noisy, distance).mean()


def reconstruction_loss(x: torch.Tensor, recon_clean: torch.Tensor | None, recon_noisy: torch.Tensor,
                        distance: str = "rms") -> torch.Tensor:
    """L_a, eq. (2): both reconstructions are compared with the CLEAN image x.

    ``recon_clean`` None means reconstruct only the noisy copies (authors' code). With K noisy copies
    per image the noisy term is averaged over copies, so each image's two terms keep equal weight.
    """
    copies = recon_noisy.shape[0] // x.shape[0]
    target = x.repeat(copies, 1, 1, 1)
    noisy_term = per_sample_distance(target, recon_noisy, distance).view(copies, -1).mean(0)
    if recon_clean is None:
        return noisy_term.mean()
    return (per_sample_distance(x, recon_clean, distance) + noisy_term).mean()


def total_loss(l_c: torch.Tensor, l_n: torch.Tensor, l_a: torch.Tensor, lambda_n: float, lambda_a: float) -> torch.Tensor:
    """Eq. (3)."""
    return l_c + lambda_n * l_n + lambda_a * l_a
