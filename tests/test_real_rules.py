"""The paper's rules on ISIC's and RSNA's real label counts (no images needed)."""
from __future__ import annotations

import pytest

from pipeline_src.config import DatasetSpec
from pipeline_src.data.prepare import split_indices
from pipeline_src.data.subsample import SubsampleError

ISIC_SIZES = {"MEL": 1113, "NV": 6705, "BCC": 514, "AKIEC": 327, "BKL": 1099, "DF": 115, "VASC": 142}
RSNA = ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal")
RSNA_STAGE2 = {"Normal": 8851, "Lung Opacity": 6012, "No Lung Opacity / Not Normal": 11821}  # 26,684 patients


def _labels(sizes: dict[str, int]) -> list[str]:
    return [cls for cls, n in sizes.items() for _ in range(n)]


def test_skin4_rules_on_isic_class_sizes():
    labels = _labels(ISIC_SIZES)
    spec = DatasetSpec(source="isic2018", image_size=224, classes=("MEL", "NV", "BCC", "BKL"), caps={"NV": 1500},
                       test_fraction=0.1667, seed=0)
    train, test = split_indices(spec, labels)
    kept = {c: sum(labels[i] == c for i in [*train, *test]) for c in spec.classes}
    assert kept == {"MEL": 1113, "NV": 1500, "BCC": 514, "BKL": 1099}
    assert len(train) + len(test) == 4226 and not set(train) & set(test)
    assert len(train) / len(test) == pytest.approx(5.0, abs=0.02)
    for c in spec.classes:  # stratified: every class split 5:1
        n_test = sum(labels[i] == c for i in test)
        assert (kept[c] - n_test) / n_test == pytest.approx(5.0, abs=0.05)


def test_rsna_rules_give_21000_and_6000():
    labels = _labels({"Normal": 9000, "Lung Opacity": 6100, "No Lung Opacity / Not Normal": 11900})  # 27,000
    spec = DatasetSpec(source="rsna", image_size=224, classes=RSNA, train_count=21000, test_count=6000, seed=0)
    train, test = split_indices(spec, labels)
    assert (len(train), len(test)) == (21000, 6000) and not set(train) & set(test)


def test_rsna_stage2_is_too_small_for_the_papers_counts():
    labels = _labels(RSNA_STAGE2)
    spec = DatasetSpec(source="rsna", image_size=224, classes=RSNA, train_count=21000, test_count=6000, seed=0)
    with pytest.raises(SubsampleError, match=r"datasets\.chest3_rsna .*26684 images.*21000 train \+ 6000 test.*"
                                             r"lower split\.train or split\.test \(e\.g\. test: 5684"):
        split_indices(spec, labels, name="chest3_rsna")
    remainder = DatasetSpec(source="rsna", image_size=224, classes=RSNA, train_count=21000, test_count=5684, seed=0)
    train, test = split_indices(remainder, labels)
    assert (len(train), len(test)) == (21000, 5684)  # configs/paper.yaml: the test set gets the remainder
