"""The one place for what the downloading sources fetch: URLs, checksums and class names.

Every entry can be overridden per dataset in params (``datasets.<name>.downloads: {<key>: {url, checksum}}``),
for a mirror or a test server. Checksums read ``sha256:<hex>`` or ``md5:<hex>``. The ISIC challenge does
not publish checksums and this project could not download the archives when it was written, so those
are ``None``: the first download records its SHA-256 beside the file (``<file>.sha256``) and logs it;
pin it here or in params once known. MedMNIST's MD5s are copied from ``medmnist.info.INFO`` (v3.0.2).
"""
from __future__ import annotations

from dataclasses import dataclass


# The embedded generators' classes and channels (pipeline_src/data/synthetic.py draws them): here, so that
# validating params does not import the generator and torch with it.
SYNTHETIC_CLASSES: dict[str, tuple[str, ...]] = {
    "synthetic-skin4": ("MEL", "NV", "BCC", "BKL"),
    "synthetic-chest3": ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal"),
}
SYNTHETIC_CHANNELS: dict[str, int] = {"synthetic-skin4": 3, "synthetic-chest3": 1}


@dataclass(frozen=True)
class Remote:
    url: str
    checksum: str | None  # 'sha256:<hex>' / 'md5:<hex>'; None = not pinned (trust on first use)


ISIC_BASE = "https://isic-challenge-data.s3.amazonaws.com/2018"
ISIC2018 = {
    "images": Remote(f"{ISIC_BASE}/ISIC2018_Task3_Training_Input.zip", None),
    "ground_truth": Remote(f"{ISIC_BASE}/ISIC2018_Task3_Training_GroundTruth.zip", None),
    # HAM10000 lesion ids (columns image,lesion_id,...), only for the lesion-aware split
    "lesion_groupings": Remote(f"{ISIC_BASE}/ISIC2018_Task3_Training_LesionGroupings.csv", None),
}
ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

RSNA_COMPETITION = "rsna-pneumonia-detection-challenge"
RSNA_CLASSES = ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal")

_ZENODO = "https://zenodo.org/records/10519652/files"
_MEDMNIST_MD5 = {
    "dermamnist": {28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
                   128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"},
    "pneumoniamnist": {28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
                       128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"},
}
MEDMNIST_SIZES = (28, 64, 128, 224)
# MedMNIST label index -> our class name. DermaMNIST is HAM10000 = ISIC 2018 task 3: the ISIC codes.
MEDMNIST_CLASSES = {
    "dermamnist": ("AKIEC", "BCC", "BKL", "DF", "MEL", "NV", "VASC"),
    "pneumoniamnist": ("Normal", "Pneumonia"),
}


def medmnist_remote(variant: str, size: int) -> Remote:
    """URL and MD5 of one MedMNIST file; from the installed ``medmnist`` package's INFO when present."""
    suffix = "" if size == 28 else f"_{size}"
    try:
        from medmnist.info import INFO  # optional extra: pip install .[medmnist]

        info = INFO[variant]
        return Remote(info[f"url{suffix}"], f"md5:{info[f'MD5{suffix}']}")
    except (ImportError, KeyError):
        return Remote(f"{_ZENODO}/{variant}{suffix}.npz?download=1", f"md5:{_MEDMNIST_MD5[variant][size]}")


def source_classes(source: str, variant: str | None = None) -> tuple[str, ...]:
    """Class names a downloading source can deliver (for validating ``datasets.<name>.classes``)."""
    if source == "isic2018":
        return ISIC2018_CLASSES
    if source == "rsna":
        return RSNA_CLASSES
    if source == "medmnist" and variant in MEDMNIST_CLASSES:
        return MEDMNIST_CLASSES[variant]
    return ()


def remotes(defaults: dict[str, Remote], overrides: dict[str, dict] | None) -> dict[str, Remote]:
    """The default entries with params' overrides (``{key: {url, checksum}}``) applied."""
    out = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in out:
            raise ValueError(f"downloads: unknown entry {key!r}; known: {', '.join(out)}")
        out[key] = Remote(value.get("url", out[key].url), value.get("checksum", out[key].checksum))
    return out
