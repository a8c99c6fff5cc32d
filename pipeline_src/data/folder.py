"""The `folder` source: a directory of images plus ``labels.csv`` (columns ``image,label``).

Image paths in the CSV are relative to the directory. Every image is decoded once, converted to the
requested number of channels and resized to a square; any unreadable file, missing file or bad row
stops with a message naming it, before anything is written.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

log = logging.getLogger(__name__)


class FolderError(ValueError):
    """The folder or its labels.csv cannot be read as a dataset."""


def read_labels(root: Path, labels_csv: str = "labels.csv") -> list[tuple[str, str]]:
    path = root / labels_csv
    if not path.is_file():
        raise FolderError(f"{path} not found: a folder dataset needs a CSV with columns image,label")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"image", "label"} <= set(reader.fieldnames):
            raise FolderError(f"{path}: expected columns image,label, found {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            image, label = (row["image"] or "").strip(), (row["label"] or "").strip()
            if not image or not label:
                raise FolderError(f"{path}, line {line}: empty image or label")
            rows.append((image, label))
    if not rows:
        raise FolderError(f"{path} lists no images")
    return rows


def decode_image(path: Path, channels: int, size: int) -> tuple[np.ndarray, str]:
    """(uint8 [C, S, S], the file's own PIL mode)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FolderError(f"{path} is listed in labels.csv but does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise FolderError(f"{path} cannot be decoded as an image ({exc}); remove it from labels.csv") from None
    return (arr[None] if channels == 1 else arr.transpose(2, 0, 1)), mode


def load_folder(root: str | Path, channels: int, image_size: int,
                labels_csv: str = "labels.csv") -> tuple[torch.Tensor, list[str]]:
    """(uint8 images [N, C, S, S], class name per image) in the CSV's order."""
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"dataset folder {root} does not exist: set datasets.<name>.path")
    rows = read_labels(root, labels_csv)
    out = np.empty((len(rows), channels, image_size, image_size), dtype=np.uint8)
    wanted = "L" if channels == 1 else "RGB"
    converted: list[str] = []
    for i, (image, _) in enumerate(tqdm(rows, desc=f"decoding {root.name}", disable=None)):
        target = (root / image).resolve()
        if root.resolve() not in target.parents:
            raise FolderError(f"{root / labels_csv}: image path {image!r} points outside {root}")
        out[i], mode = decode_image(target, channels, image_size)
        if mode != wanted:
            converted.append(image)
    if converted:
        # A grayscale image in an RGB set (or the reverse) is converted, not rejected: counted and named
        # so that a folder mixing modalities by mistake is seen.
        log.warning("%d of %d images converted to %s (datasets.<name>.channels = %d): %s%s", len(converted),
                    len(rows), wanted, channels, ", ".join(converted[:5]), " ..." if len(converted) > 5 else "")
    log.info("decoded %d images from %s", len(rows), root)
    return torch.from_numpy(out), [label for _, label in rows]
