"""The `medmnist` source: DermaMNIST or PneumoniaMNIST at 28, 64, 128 or 224 px.

One ``.npz`` per dataset and size, downloaded with our verifying downloader (URL and MD5 from the
``medmnist`` package's INFO when it is installed, else the copy in ``catalog.py``) into
``<raw_dir>/medmnist/``. MedMNIST's own train/val/test splits are pooled and the params' rules applied,
like any other source: DermaMNIST is HAM10000, so the SKIN4 rules (MEL, NV, BCC, BKL; NV capped) apply.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline_src.data.catalog import MEDMNIST_CLASSES, MEDMNIST_SIZES, medmnist_remote, remotes
from pipeline_src.data.download import RETRIES, download
from pipeline_src.data.raw import RawData

log = logging.getLogger(__name__)


class MedmnistError(ValueError):
    """A MedMNIST file is not in the expected layout, or the size or variant is unknown."""


def load_medmnist(raw_dir: str | Path, variant: str, image_size: int, overrides: dict | None = None) -> RawData:
    if variant not in MEDMNIST_CLASSES:
        raise MedmnistError(f"unknown MedMNIST variant {variant!r}; known: {', '.join(MEDMNIST_CLASSES)}")
    if image_size not in MEDMNIST_SIZES:
        raise MedmnistError(f"MedMNIST comes at {MEDMNIST_SIZES} px, not {image_size}; set image_size to one of them")
    remote = remotes({"npz": medmnist_remote(variant, image_size)}, overrides)["npz"]
    path = download(remote.url, Path(raw_dir) / "medmnist" / f"{variant}_{image_size}.npz", remote.checksum,
                    retries=RETRIES)
    with np.load(path, allow_pickle=False) as npz:
        try:
            images = np.concatenate([npz[f"{s}_images"] for s in ("train", "val", "test")])
            labels = np.concatenate([npz[f"{s}_labels"] for s in ("train", "val", "test")]).reshape(-1)
        except KeyError as exc:
            raise MedmnistError(f"{path}: missing array {exc}; delete the file to download it again") from None
    if images.ndim == 3:
        images = images[:, None]
    else:  # [N, H, W, C] -> [N, C, H, W]
        images = images.transpose(0, 3, 1, 2)
    if images.shape[-1] != image_size or images.dtype != np.uint8:
        raise MedmnistError(f"{path}: images are {images.dtype} {images.shape[-2:]}, expected uint8 {image_size} px")
    names = MEDMNIST_CLASSES[variant]
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    log.info("%s: %d images at %d px", variant, len(labels), image_size)
    return RawData(labels=[names[int(i)] for i in labels], load=lambda idx: tensor[torch.as_tensor(idx)])
