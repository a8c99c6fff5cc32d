"""What a source hands to ``prepare``: every label, and a loader that decodes only the kept images."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RawData:
    labels: list[str]                                   # class name per raw image
    load: Callable[[np.ndarray], torch.Tensor]          # sorted indices -> uint8 [n, C, S, S]
    groups: list[str] | None = None                     # e.g. HAM10000 lesion_id per image (grouped split)
