"""`prepare` stage: obtain the raw images, apply the subsampling rules, store uint8 tensors once.

Output per dataset: ``train.pt`` and ``test.pt`` ({images: uint8 [N,C,H,W], labels: int64 [N],
classes: [...]}) and ``summary.json`` with the per-class counts.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline_src.config import DatasetSpec
from pipeline_src.data.folder import load_folder
from pipeline_src.data.raw import RawData
from pipeline_src.data.split import Split, load_split  # noqa: F401  (re-exported)
from pipeline_src.data.subsample import SubsampleError, grouped_split, subsample_split
from pipeline_src.data.classes import SYNTHETIC_CLASSES
from pipeline_src.data.synthetic import generate
from pipeline_src.io import load_torch, save_torch, write_json

log = logging.getLogger(__name__)


def load_raw(spec: DatasetSpec) -> tuple[torch.Tensor, list[str]]:
    """Raw images (uint8) and their class names, before any rule is applied."""
    from pipeline_src.data.synthetic import SYNTHETIC_CLASSES, generate

    if spec.source in SYNTHETIC_CLASSES:
        images, labels, names = generate(spec.source, spec.synthetic_counts, spec.image_size, spec.seed)
        return images, [names[i] for i in labels.tolist()]
    if spec.source == "folder":
        assert spec.path is not None and spec.channels is not None  # validated with the params
        from pipeline_src.data.folder import load_folder

        return load_folder(spec.path, spec.channels, spec.image_size)
    raise ValueError(f"unknown dataset source {spec.source!r}")


DOWNLOADING_SOURCES = ("isic2018", "rsna", "medmnist")


def load_downloaded(spec: DatasetSpec) -> RawData:
    """A downloading source (fetched into ``spec.raw_dir`` on first use); images decoded lazily."""
    overrides = json.loads(spec.downloads) if spec.downloads else None
    raw_dir = spec.raw_dir or "data/raw"
    if spec.source == "isic2018":
        from pipeline_src.data.isic2018 import load_isic2018
        return load_isic2018(raw_dir, spec.image_size, overrides, bool(spec.lesion_aware))
    if spec.source == "rsna":
        from pipeline_src.data.rsna import load_rsna
        return load_rsna(raw_dir, spec.image_size)
    from pipeline_src.data.medmnist_source import load_medmnist
    assert spec.variant is not None  # validated with the params
    return load_medmnist(raw_dir, spec.variant, spec.image_size, overrides)


def split_indices(spec: DatasetSpec, label_names: list[str], groups: list[str] | None = None,
                  name: str = "<name>"):
    """The paper's rules on the labels; with groups (lesion-aware), a grouped split."""
    from pipeline_src.data.subsample import SubsampleError, grouped_split, subsample_split

    if groups is not None:
        assert spec.test_fraction is not None  # validated with the params
        return grouped_split(label_names, groups, spec.classes, spec.caps, seed=spec.seed,
                             test_fraction=spec.test_fraction)
    try:
        return subsample_split(label_names, spec.classes, spec.caps, seed=spec.seed,
                               test_fraction=spec.test_fraction, train_count=spec.train_count,
                               test_count=spec.test_count)
    except SubsampleError as exc:
        raise SubsampleError(f"datasets.{name} ({spec.source}, {len(label_names)} images): {exc}") from None


def count_dropped(label_names: list[str], classes: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Labels outside ``classes`` are dropped by design (ISIC's AKIEC, DF, VASC): counted and logged, so a
    typo in a class name shows up as a dropped label rather than as a silently smaller dataset."""
    dropped = dict(sorted(Counter(n for n in label_names if n not in classes).items()))
    if dropped:
        log.warning("dropped %d of %d images whose label is not in classes %s: %s", sum(dropped.values()),
                    len(label_names), list(classes), dropped)
    return dropped


def prepare(spec: DatasetSpec, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    if spec.source in DOWNLOADING_SOURCES:
        raw = load_downloaded(spec)
        label_names = raw.labels
        dropped = count_dropped(label_names, spec.classes)
        train_idx, test_idx = split_indices(spec, label_names, raw.groups, out_dir.name)  # before decoding anything
        keep = np.union1d(train_idx, test_idx)
        images = raw.load(keep)  # only the kept images are decoded; re-index into them
        label_names = [label_names[i] for i in keep]
        train_idx, test_idx = np.searchsorted(keep, train_idx), np.searchsorted(keep, test_idx)
    else:
        images, label_names = load_raw(spec)
        dropped = count_dropped(label_names, spec.classes)
        train_idx, test_idx = split_indices(spec, label_names, name=out_dir.name)
    class_index = {c: i for i, c in enumerate(spec.classes)}
    summary: dict = {"source": spec.source, "classes": list(spec.classes), "image_size": spec.image_size,
                     "channels": int(images.shape[1]), "dropped": dropped}
    for split, idx in (("train", train_idx), ("test", test_idx)):
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        labels = torch.tensor([class_index[label_names[i]] for i in idx], dtype=torch.long)
        split_images = images[idx_t].contiguous()
        save_torch({"images": split_images, "labels": labels, "classes": list(spec.classes)}, out_dir / f"{split}.pt")
        counts = torch.bincount(labels, minlength=len(spec.classes)).tolist()
        summary[split] = {"n": len(idx), "per_class": dict(zip(spec.classes, counts)),
                          "sha256": hashlib.sha256(split_images.numpy().tobytes()).hexdigest()}
        log.info("%s: %d images %s", split, len(idx), summary[split]["per_class"])
    write_json(out_dir / "summary.json", summary)
    return summary
