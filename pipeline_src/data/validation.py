"""A validation split carved out of the training images, for choosing settings without the test split."""
from __future__ import annotations

import torch

from pipeline_src.data.prepare import Split
from pipeline_src.data.subsample import subsample_split


def carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(fit, validation): a stratified ``fraction`` of each class of ``train`` becomes the validation split.

    The paper's own stratified rule (``subsample_split``) with no caps, so each class keeps its share.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    names = [train.classes[i] for i in train.labels.tolist()]
    fit_idx, val_idx = subsample_split(names, train.classes, {}, seed=seed, test_fraction=fraction)

    def take(idx) -> Split:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return Split(images=train.images[idx_t].contiguous(), labels=train.labels[idx_t].clone(),
                     classes=list(train.classes))

    return take(fit_idx), take(val_idx)
