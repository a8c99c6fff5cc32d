"""One prepared split as stored on disk, and how jobs load it (memory-mapped, never unpickling code).

Apart from prepare.py so that the jobs that read prepared data do not import every data source.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline_src.io import load_torch


@dataclass(frozen=True)
class Split:
    """One prepared split, as stored on disk."""
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    classes: list[str]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def float_images(self, idx: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        return self.images[idx].float().div_(255.0)


def load_split(path: str | Path) -> Split:
    data = load_torch(path, mmap=True)
    return Split(images=data["images"], labels=data["labels"], classes=list(data["classes"]))
