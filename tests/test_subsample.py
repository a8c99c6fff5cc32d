"""The paper's subsampling rules on label lists of the real datasets' class sizes."""
import numpy as np
import pytest

from pipeline_src.data.subsample import SubsampleError, subsample_split

# ISIC 2018 task 3 training set (HAM10000) class sizes
ISIC = {"MEL": 1113, "NV": 6705, "BCC": 514, "AKIEC": 327, "BKL": 1099, "DF": 115, "VASC": 142}


def labels_of(sizes: dict[str, int]) -> list[str]:
    rng = np.random.default_rng(0)
    labels = [c for c, n in sizes.items() for _ in range(n)]
    return list(rng.permutation(labels))


def test_skin4_rules_give_the_papers_counts():
    labels = labels_of(ISIC)
    train, test = subsample_split(labels, ["MEL", "NV", "BCC", "BKL"], {"NV": 1500}, seed=0, test_fraction=1 / 6)
    kept = np.concatenate([train, test])
    counts = {c: sum(labels[i] == c for i in kept) for c in ("MEL", "NV", "BCC", "BKL")}
    assert counts == {"MEL": 1113, "NV": 1500, "BCC": 514, "BKL": 1099}
    assert len(kept) == 4226 and len(set(kept)) == 4226  # no image in both splits
    assert len(train) / len(test) == pytest.approx(5.0, rel=0.01)
    for c in counts:  # stratified: every class split about 5:1
        n_test = sum(labels[i] == c for i in test)
        assert n_test == round(counts[c] / 6) or abs(n_test - counts[c] / 6) <= 0.5


def test_fixed_counts_split_is_stratified_and_exact():
    sizes = {"Normal": 8851, "Lung Opacity": 6012, "No Lung Opacity / Not Normal": 11821}
    labels = labels_of(sizes)
    train, test = subsample_split(labels, list(sizes), {}, seed=1, train_count=20000, test_count=6000)
    assert len(train) == 20000 and len(test) == 6000 and not set(train) & set(test)
    share = sum(labels[i] == "Lung Opacity" for i in test) / 6000
    assert share == pytest.approx(6012 / sum(sizes.values()), abs=0.001)


def test_same_seed_same_split_and_other_seed_differs():
    labels = labels_of({"a": 50, "b": 70})
    a = subsample_split(labels, ["a", "b"], {"b": 40}, seed=3, test_fraction=0.2)
    b = subsample_split(labels, ["a", "b"], {"b": 40}, seed=3, test_fraction=0.2)
    c = subsample_split(labels, ["a", "b"], {"b": 40}, seed=4, test_fraction=0.2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_impossible_rules_fail_with_clear_messages():
    labels = labels_of({"a": 10, "b": 10})
    with pytest.raises(SubsampleError, match="class 'c' has no images"):
        subsample_split(labels, ["a", "c"], {}, seed=0, test_fraction=0.2)
    with pytest.raises(SubsampleError, match="only 20 remain"):
        subsample_split(labels, ["a", "b"], {}, seed=0, train_count=15, test_count=10)
