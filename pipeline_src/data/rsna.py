"""The `rsna` source: RSNA Pneumonia Detection Challenge (stage 2 training set) through the Kaggle API.

Credentials are checked before anything else (``kaggle_credentials``); the competition archive is
downloaded once into ``<raw_dir>/rsna/`` with the ``kaggle`` package, extracted safely, and every
patient gets one label from ``stage_2_detailed_class_info.csv`` (a patient with several boxes repeats
there). DICOMs are read with pydicom and resized to a square.

Size: the stage 2 training set has 26,684 patients, fewer than the paper's 21,000 + 6,000. The split
counts are checked against the patients available before any image is decoded; configs/paper.yaml
keeps 21,000 for training and tests on the remaining 5,684 (README, "Where we differ").
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline_src.data.archive import safe_extract
from pipeline_src.data.catalog import RSNA_CLASSES, RSNA_COMPETITION
from pipeline_src.data.raw import RawData

log = logging.getLogger(__name__)
CLASS_INFO = "stage_2_detailed_class_info.csv"
IMAGES = "stage_2_train_images"


class KaggleCredentialsError(ValueError):  # a ValueError: the CLI reports it in one line
    """No Kaggle API credentials were found (the message says where to put them)."""


class RsnaError(ValueError):
    """The RSNA files are missing, inconsistent or cannot be downloaded."""


def kaggle_credentials(env: Mapping[str, str] | None = None, home: str | Path | None = None) -> str:
    """Where the Kaggle credentials come from (never their value); raises KaggleCredentialsError if none.

    Looked up like the ``kaggle`` client does: KAGGLE_USERNAME + KAGGLE_KEY, then KAGGLE_API_TOKEN,
    then kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle.
    """
    env = os.environ if env is None else env
    home = Path(home) if home is not None else Path.home()
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "environment (KAGGLE_USERNAME, KAGGLE_KEY)"
    if env.get("KAGGLE_API_TOKEN"):
        return "environment (KAGGLE_API_TOKEN)"
    dirs = ([Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []) + [
        home / ".kaggle", home / ".config" / "kaggle"]
    for d in dirs:
        path = d / "kaggle.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise KaggleCredentialsError(f"{path} is not readable JSON ({type(exc).__name__}); it must hold "
                                             '{"username": "...", "key": "..."}') from None
            if not (isinstance(data, dict) and data.get("username") and data.get("key")):
                raise KaggleCredentialsError(f'{path} must hold {{"username": "...", "key": "..."}} '
                                             "(Kaggle > Settings > API > Create New Token)")
            return str(path)
    raise KaggleCredentialsError(
        "the rsna source downloads from Kaggle and no Kaggle credentials were found: create a token at "
        "https://www.kaggle.com/settings (API > Create New Token) and save it as "
        f"{home / '.kaggle' / 'kaggle.json'} (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY; "
        f"then accept the competition rules at https://www.kaggle.com/c/{RSNA_COMPETITION}/rules")


def make_kaggle_api():
    """An authenticated KaggleApi. Imported here: ``import kaggle`` itself tries to authenticate."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise RsnaError("the rsna source needs the kaggle package: pip install 'pipeline_src[kaggle]' "
                        "(or pip install kaggle)") from None
    api = KaggleApi()
    api.authenticate()
    return api


def fetch_rsna(raw_dir: str | Path) -> Path:
    """The extracted competition folder (holding CLASS_INFO and IMAGES), downloaded on first use."""
    root = Path(raw_dir) / "rsna"
    files = root / "files"
    if (files / CLASS_INFO).is_file() and (files / IMAGES).is_dir():
        return files
    where = kaggle_credentials()  # before any import of kaggle or any network access
    log.info("Kaggle credentials from %s; downloading %s", where, RSNA_COMPETITION)
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    api = make_kaggle_api()
    try:
        api.competition_download_files(RSNA_COMPETITION, path=str(downloads), quiet=False)
    except Exception as exc:  # the client raises its own HTTP/API errors
        hint = (f"accept the rules at https://www.kaggle.com/c/{RSNA_COMPETITION}/rules"
                if "403" in str(exc) or "Forbidden" in str(exc) else "check the network and the credentials")
        raise RsnaError(f"Kaggle download of {RSNA_COMPETITION} failed: {exc}; {hint}") from None
    archives = sorted(downloads.glob("*.zip"))
    if not archives:
        raise RsnaError(f"the Kaggle client wrote no .zip into {downloads}")
    if files.exists():  # a previous, incomplete extraction
        raise RsnaError(f"{files} exists but lacks {CLASS_INFO} or {IMAGES}/: delete it and run again")
    safe_extract(archives[0], files)
    if not (files / CLASS_INFO).is_file():
        raise RsnaError(f"{archives[0].name} has no {CLASS_INFO}: not the RSNA stage 2 archive?")
    archives[0].unlink()  # 3.7 GB; the extracted folder is the cache from now on
    return files


def read_class_info(path: Path) -> list[tuple[str, str]]:
    """(patientId, class), one per patient, sorted by patientId; conflicting repeats are an error."""
    labels: dict[str, str] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"patientId", "class"} <= set(reader.fieldnames or []):
            raise RsnaError(f"{path}: expected columns patientId,class, found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            pid, cls = row["patientId"], row["class"]
            if cls not in RSNA_CLASSES:
                raise RsnaError(f"{path}, line {line}: unknown class {cls!r}; known: {', '.join(RSNA_CLASSES)}")
            if labels.setdefault(pid, cls) != cls:
                raise RsnaError(f"{path}, line {line}: patient {pid} is both {labels[pid]!r} and {cls!r}")
    return sorted(labels.items())


def read_dicom(path: Path, size: int) -> np.ndarray:
    """uint8 [1, size, size] from one DICOM (RSNA's are 8-bit 1024x1024 MONOCHROME2)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except FileNotFoundError:
        raise RsnaError(f"{path} is listed in {CLASS_INFO} but does not exist") from None
    except Exception as exc:  # pydicom raises many types for a broken file
        raise RsnaError(f"{path} cannot be read as DICOM ({exc})") from None
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) * (255.0 / max(hi - lo, 1e-12))).round().astype(np.uint8)
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        arr = 255 - arr
    im = Image.fromarray(arr, mode="L")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)[None]


def load_rsna(raw_dir: str | Path, image_size: int) -> RawData:
    files = fetch_rsna(raw_dir)
    patients = read_class_info(files / CLASS_INFO)

    def load(idx: np.ndarray) -> torch.Tensor:
        out = np.empty((len(idx), 1, image_size, image_size), dtype=np.uint8)
        for j, i in enumerate(tqdm(idx, desc="decoding RSNA DICOMs", disable=None)):
            out[j] = read_dicom(files / IMAGES / f"{patients[i][0]}.dcm", image_size)
        return torch.from_numpy(out)

    log.info("RSNA: %d patients in %s", len(patients), files / CLASS_INFO)
    return RawData(labels=[cls for _, cls in patients], load=load)
