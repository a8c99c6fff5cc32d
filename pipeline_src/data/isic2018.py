"""The `isic2018` source: ISIC 2018 Task 3 training images and ground truth (HAM10000, 10,015 images).

Downloads the two official archives into ``<raw_dir>/isic2018/`` (verified, resumable, safely
extracted), reads the one-hot ground-truth CSV, and decodes only the images the SKIN4 rules keep.
With ``lesion_aware`` the HAM10000 ``lesion_id`` of every image is read, so that the split keeps all
images of one lesion on the same side (the paper did not; default off). The lesion ids come from
``ISIC2018_Task3_Training_LesionGroupings.csv`` (downloaded) or a ``HAM10000_metadata.csv`` you put
in the same folder (Harvard Dataverse, doi:10.7910/DVN/DBW86T).
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline_src.data.archive import safe_extract
from pipeline_src.data.catalog import ISIC2018, ISIC2018_CLASSES, remotes
from pipeline_src.data.download import RETRIES, DownloadError, download
from pipeline_src.data.folder import decode_image
from pipeline_src.data.raw import RawData

log = logging.getLogger(__name__)
HAM_METADATA = "HAM10000_metadata.csv"


class IsicError(ValueError):
    """The ISIC files are missing or not in the expected layout."""


def fetch(root: Path, key: str, overrides: dict | None) -> Path:
    """Download (if needed) and extract one archive; return the extracted folder."""
    remote = remotes(ISIC2018, overrides)[key]
    archive = download(remote.url, root / "downloads" / Path(remote.url.split("?")[0]).name, remote.checksum,
                       retries=RETRIES)
    target = root / key
    return target if target.is_dir() else safe_extract(archive, target)


def _one_hot_value(text: str | None, path: Path, line: int, column: str) -> float:
    """0 or 1 (as the CSV writes them, e.g. '1.0'); anything else, NaN included, names the cell."""
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if value not in (0.0, 1.0):
        raise IsicError(f"{path}, line {line}: column {column} = {text!r}; a one-hot ground truth holds 0 or 1")
    return value


def read_ground_truth(path: Path) -> list[tuple[str, str]]:
    """(image id, class) per row of the one-hot ground-truth CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", *ISIC2018_CLASSES} - set(reader.fieldnames or [])
        if missing:
            raise IsicError(f"{path}: missing columns {sorted(missing)}; expected image,{','.join(ISIC2018_CLASSES)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            hot = [c for c in ISIC2018_CLASSES if _one_hot_value(row[c], path, line, c) == 1.0]
            if len(hot) != 1:
                raise IsicError(f"{path}, line {line}: image {row['image']} has {len(hot)} classes marked, expected 1")
            rows.append((row["image"], hot[0]))
    return rows


def read_lesion_ids(root: Path, overrides: dict | None) -> dict[str, str]:
    """image id -> HAM10000 lesion_id, from HAM10000_metadata.csv if present, else the ISIC groupings CSV."""
    ham = root / HAM_METADATA
    if ham.is_file():
        path, image_col = ham, "image_id"
    else:
        remote = remotes(ISIC2018, overrides)["lesion_groupings"]
        try:
            path = download(remote.url, root / Path(remote.url.split("?")[0]).name, remote.checksum,
                            retries=RETRIES)
        except DownloadError as exc:
            raise IsicError(f"the lesion-aware split needs HAM10000's lesion ids and none could be found: put "
                            f"{HAM_METADATA} (Harvard Dataverse doi:10.7910/DVN/DBW86T) into {root}, or set "
                            f"datasets.<name>.lesion_aware: false ({exc})") from None
        image_col = "image"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {image_col, "lesion_id"} <= set(reader.fieldnames or []):
            raise IsicError(f"{path}: expected columns {image_col},lesion_id, found {reader.fieldnames}")
        return {row[image_col]: row["lesion_id"] for row in reader}


def load_isic2018(raw_dir: str | Path, image_size: int, overrides: dict | None = None,
                  lesion_aware: bool = False) -> RawData:
    root = Path(raw_dir) / "isic2018"
    images_dir = fetch(root, "images", overrides)
    gt_dir = fetch(root, "ground_truth", overrides)
    csvs = sorted(gt_dir.rglob("*GroundTruth*.csv")) or sorted(gt_dir.rglob("*.csv"))
    if not csvs:
        raise IsicError(f"no ground-truth CSV in {gt_dir}; delete the folder to extract the archive again")
    rows = read_ground_truth(csvs[0])
    files = {p.stem: p for p in images_dir.rglob("*.jpg")}
    absent = [image for image, _ in rows if image not in files]
    if absent:
        raise IsicError(f"{len(absent)} images of {csvs[0].name} are not in {images_dir} (first: {absent[0]}); "
                        "delete the folder and its archive to download them again")
    groups = None
    if lesion_aware:
        lesions = read_lesion_ids(root, overrides)
        unknown = [image for image, _ in rows if image not in lesions]
        if unknown:
            raise IsicError(f"{len(unknown)} images have no lesion_id in the lesion metadata (first: {unknown[0]})")
        groups = [lesions[image] for image, _ in rows]

    def load(idx: np.ndarray) -> torch.Tensor:
        out = np.empty((len(idx), 3, image_size, image_size), dtype=np.uint8)
        for j, i in enumerate(tqdm(idx, desc="decoding ISIC 2018", disable=None)):
            out[j], _ = decode_image(files[rows[i][0]], 3, image_size)
        return torch.from_numpy(out)

    log.info("ISIC 2018: %d labelled images in %s", len(rows), images_dir)
    return RawData(labels=[label for _, label in rows], load=load, groups=groups)
