"""The `folder` source: images + labels.csv, decoded once, every bad file named."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_src.config import DatasetSpec
from pipeline_src.data.folder import FolderError, load_folder
from pipeline_src.data.prepare import load_split, prepare

SHARED_RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna_subset_256"


def make_folder(root: Path, n_per_class: int = 6, mode: str = "RGB") -> Path:
    (root / "images").mkdir(parents=True)
    rows = ["image,label"]
    rng = np.random.default_rng(0)
    for label, value in (("cat", 40), ("dog", 200)):
        for i in range(n_per_class):
            arr = np.full((48, 40, 3), value, dtype=np.uint8) + rng.integers(0, 20, (48, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).convert(mode).save(root / "images" / f"{label}{i}.png")
            rows.append(f"images/{label}{i}.png,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_load_folder_converts_and_resizes(tmp_path):
    root = make_folder(tmp_path / "ds")
    images, labels = load_folder(root, channels=1, image_size=32)
    assert images.shape == (12, 1, 32, 32) and images.dtype == torch.uint8
    assert labels[:6] == ["cat"] * 6 and labels[6:] == ["dog"] * 6
    assert images[:6].float().mean() < images[6:].float().mean()  # dark cats, bright dogs survive decoding
    rgb, _ = load_folder(make_folder(tmp_path / "gray", mode="L"), channels=3, image_size=32)
    assert rgb.shape == (12, 3, 32, 32)  # a grayscale image in an RGB set is converted, not rejected


def test_prepare_from_folder_applies_the_rules(tmp_path):
    root = make_folder(tmp_path / "ds")
    spec = DatasetSpec(source="folder", image_size=32, classes=("cat", "dog"), caps={"dog": 4},
                       test_fraction=0.25, path=str(root), channels=3, seed=0)
    summary = prepare(spec, tmp_path / "out")
    assert summary["train"]["per_class"] == {"cat": 4, "dog": 3}
    assert summary["test"]["per_class"] == {"cat": 2, "dog": 1}
    assert load_split(tmp_path / "out" / "train.pt").images.shape == (7, 3, 32, 32)


@pytest.mark.parametrize("damage,message", [
    (lambda root: (root / "images" / "cat0.png").unlink(), "cat0.png is listed in labels.csv but does not exist"),
    (lambda root: (root / "images" / "dog1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "dog1.png cannot be decoded"),
    (lambda root: (root / "labels.csv").write_text("file,label\nimages/cat0.png,cat\n"), "expected columns image,label"),
    (lambda root: (root / "labels.csv").write_text("image,label\nimages/cat0.png,\n"), "line 2: empty image or label"),
    (lambda root: (root / "labels.csv").write_text("image,label\n../outside.png,cat\n"), "points outside"),
])
def test_bad_folder_data_is_named(tmp_path, damage, message):
    root = make_folder(tmp_path / "ds")
    damage(root)
    with pytest.raises(FolderError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_folder(root, channels=3, image_size=32)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not SHARED_RSNA.is_dir(), reason=f"real RSNA subset not present at {SHARED_RSNA}")
def test_real_rsna_subset_prepares_with_fixed_counts(tmp_path):
    spec = DatasetSpec(source="folder", image_size=32,
                       classes=("Normal", "Lung Opacity", "No Lung Opacity / Not Normal"),
                       train_count=1200, test_count=300, path=str(SHARED_RSNA), channels=1, seed=0)
    summary = prepare(spec, tmp_path / "rsna")
    assert summary["train"]["n"] == 1200 and summary["test"]["n"] == 300
    assert summary["test"]["per_class"] == {"Normal": 92, "Lung Opacity": 75, "No Lung Opacity / Not Normal": 133}
    assert summary["channels"] == 1
