"""The `folder` source: a directory of images plus ``labels.csv`` (columns ``image,label``).

Image paths in the CSV are relative to the directory. Every image is decoded once, converted to the
requested number of channels and resized to a square; any unreadable file, missing file or bad row
stops with a message naming it, before anything is written.
"""
from __future__ import annotations

import csv
import logging
import os
import posixpath
import stat
from pathlib import Path
from typing import BinaryIO

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
    # utf-8-sig: spreadsheet programs save CSV with a byte-order mark, which would otherwise glue itself to
    # the first column's name ('\ufeffimage')
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"image", "label"} <= set(reader.fieldnames):
                raise FolderError(f"{path}: expected columns image,label, found {reader.fieldnames}")
            rows = []
            first_line: dict[str, int] = {}
            for row in reader:
                line = reader.line_num  # the CSV line the row ends on (a quoted field may span lines)
                image, label = (row["image"] or "").strip(), (row["label"] or "").strip()
                if not image or not label:
                    raise FolderError(f"{path}, line {line}: empty image or label")
                key = posixpath.normpath(image.replace("\\", "/"))
                if key in first_line:
                    # the same image twice would land in train and test (a leak), or carry two labels
                    raise FolderError(f"{path}: image {image!r} is listed on lines {first_line[key]} and {line}; "
                                      "list each image once")
                first_line[key] = line
                rows.append((image, label))
    except UnicodeDecodeError as exc:
        raise FolderError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8 CSV") from None
    if not rows:
        raise FolderError(f"{path} lists no images")
    return rows


def _open_regular(path: Path) -> BinaryIO:
    """The file, opened for reading only if it is a regular file: a FIFO would block ``open`` forever and a
    device file could stream without end. O_NONBLOCK keeps even a FIFO swapped in after the check from
    blocking; the fstat after opening is the check that counts."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise FolderError(f"{path} is not a regular file ({_kind(os.stat(path).st_mode)}); labels.csv must "
                              "list image files: remove it")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FolderError(f"{path} is listed in labels.csv but does not exist") from None
    except OSError as exc:
        raise FolderError(f"{path} cannot be opened ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FolderError(f"{path} is not a regular file ({_kind(mode)}); labels.csv must list image files: remove it")
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block "
                       "device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def decode_image(path: Path, channels: int, size: int) -> tuple[np.ndarray, str]:
    """(uint8 [C, S, S], the file's own PIL mode). Every failure is a FolderError naming the file."""
    with _open_regular(path) as fh:
        try:
            with Image.open(fh) as im:
                mode = im.mode
                im = im.convert("L" if channels == 1 else "RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Image.DecompressionBombError as exc:
            # PIL refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 million pixels) before decoding them
            raise FolderError(f"{path}: {exc}; an image this large is either corrupt or hostile: remove it from "
                              "labels.csv, or shrink it first") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise FolderError(f"{path} cannot be decoded as an image ({exc}); remove it from labels.csv") from None
        except Exception as exc:  # noqa: BLE001 - PIL's decoders raise ValueError, SyntaxError, EOFError, ...
            raise FolderError(f"{path} cannot be decoded as an image ({type(exc).__name__}: {exc}); "
                              "remove it from labels.csv") from None
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
    targets: dict[Path, str] = {}
    for image, _ in rows:  # every path checked before the first image is decoded
        target = (root / image).resolve()
        if root.resolve() not in target.parents:
            raise FolderError(f"{root / labels_csv}: image path {image!r} points outside {root}")
        if target in targets:  # two spellings (or a link) of one file: the same leak as a repeated line
            raise FolderError(f"{root / labels_csv}: images {targets[target]!r} and {image!r} are the same file "
                              f"{target}; list each image once")
        targets[target] = image
    for i, (target, image) in enumerate(tqdm(list(targets.items()), desc=f"decoding {root.name}", disable=None)):
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
