"""The ensemble surrogate of the audit: one classifier whose logits are the mean of its members' logits.

Attacking several architectures at once through their averaged logits (Liu et al., ICLR 2017; Dong et al.'s
"ensemble in logits", CVPR 2018) yields adversarial images that transfer better than those of one surrogate:
z(x) = (1/M) sum_m z_m(x), so grad_x CE(z(x), y) is the gradient through the mean of the logits. Every member
takes [0, 1] images and normalises them itself, like the project's classifiers.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn


class EnsembleSurrogate(nn.Module):
    """z(x) = mean_m z_m(x) over ``members`` (each: [0, 1] images -> logits of the same classes)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        logits = [m(x) for m in self.members]
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on the logits' shape: {sorted(shapes)}")
        return torch.stack(logits).mean(dim=0)


def load_ensemble(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> EnsembleSurrogate:
    """The members' checkpoints (checkpoints.load_model) as one frozen surrogate in eval mode; the members must
    have been trained on the same classes."""
    from pipeline_src.checkpoints import load_checkpoint  # local: checkpoints imports models

    ckpts = [load_checkpoint(p, device) for p in paths]
    classes = {tuple(c.classes) for c in ckpts}
    if len(classes) != 1:
        raise ValueError(f"ensemble members {[str(p) for p in paths]} were trained on different classes: "
                         f"{sorted(classes)}; train them on the same dataset")
    ensemble = EnsembleSurrogate([c.model for c in ckpts]).eval()
    for p in ensemble.parameters():  # gradients w.r.t. the input only
        p.requires_grad_(False)
    return ensemble
