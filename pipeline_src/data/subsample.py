"""The paper's subsampling rules, applied to a list of labels: keep classes, cap classes, split.

Pure functions over label arrays, so the rules can be checked on ISIC's and RSNA's real class sizes
without any image.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class SubsampleError(ValueError):
    """The rules cannot be met by the data (empty class, too few images for the requested counts)."""


def _quotas(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` over classes in proportion to ``sizes`` (largest-remainder, deterministic)."""
    n = sum(sizes)
    exact = [total * s / n for s in sizes]
    quotas = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _count_quotas(sizes: Sequence[int], train_count: int, test_count: int) -> tuple[list[int], list[int]]:
    """Per-class (train, test) counts for fixed totals, in proportion to the class sizes."""
    n_test = _quotas(sizes, test_count)
    n_train = _quotas(sizes, train_count)
    if any(a + b > s for a, b, s in zip(n_train, n_test, sizes)):
        # Rounding can overflow a class when train + test is (nearly) every image (RSNA: 21,000 + the
        # remaining 5,684): then share train over what test left. Otherwise unchanged, so existing splits stay.
        n_train = _quotas([s - t for s, t in zip(sizes, n_test)], train_count)
    # quotas <= capacity by construction now; assert it because a silent overlap would leak test images.
    assert all(a + b <= s for a, b, s in zip(n_train, n_test, sizes))
    return n_train, n_test


def _achievable(sizes: Sequence[int], train_count: int, test_count: int) -> bool:
    """Would these totals give every class at least one train and one test image?"""
    if train_count < 1 or test_count < 1 or train_count + test_count > sum(sizes):
        return False
    n_train, n_test = _count_quotas(sizes, train_count, test_count)
    return all(a > 0 and b > 0 for a, b in zip(n_train, n_test))


def _count_hint(sizes: Sequence[int], train_count: int, test_count: int) -> str:
    """A fix that works: keep train (or test) and give the other the rest, else keep the train:test ratio."""
    total = sum(sizes)
    ratio_test = max(1, round(total * test_count / (train_count + test_count)))
    for train, test, how in ((train_count, total - train_count, f"test: {total - train_count}"),
                             (total - test_count, test_count, f"train: {total - test_count}"),
                             (total - ratio_test, ratio_test, f"train: {total - ratio_test}, test: {ratio_test}")):
        if _achievable(sizes, train, test):
            return f"lower split.train or split.test (e.g. {how} uses every remaining image)"
    return (f"there are too few images for a split in which every class has train and test images "
            f"(class sizes {list(sizes)}); add images or use split.test_fraction")


def _kept(labels: np.ndarray, cls: str, caps: Mapping[str, int], rng: np.random.Generator) -> np.ndarray:
    """Indices of class ``cls``, randomly cut to ``caps[cls]`` if capped (rules 1 and 2); never empty."""
    idx = np.flatnonzero(labels == cls)
    if cls in caps and len(idx) > caps[cls]:
        idx = np.sort(rng.choice(idx, size=caps[cls], replace=False))
    if len(idx) == 0:
        raise SubsampleError(f"class {cls!r} has no images after subsampling; "
                             f"remove it from 'classes' or check the labels")
    return idx


def subsample_split(labels: Sequence[str], classes: Sequence[str], caps: Mapping[str, int], *,
                    seed: int, test_fraction: float | None = None, train_count: int | None = None,
                    test_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, test_indices) into ``labels``, each sorted.

    1. keep only ``classes``; 2. randomly keep at most ``caps[c]`` images of class c;
    3. stratified split: per class round(n_c * test_fraction) to test, or fixed total counts
       allocated to classes in proportion to their size.
    """
    if (test_fraction is None) == (train_count is None or test_count is None):
        raise SubsampleError("give either test_fraction or both train_count and test_count")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels, dtype=object)
    per_class: list[np.ndarray] = []
    for cls in classes:
        idx = _kept(labels_arr, cls, caps, rng)
        per_class.append(rng.permutation(idx))
    sizes = [len(i) for i in per_class]
    if test_fraction is not None:
        n_test = [int(np.floor(s * test_fraction + 0.5)) for s in sizes]
        n_train = [s - t for s, t in zip(sizes, n_test)]
    else:
        assert train_count is not None and test_count is not None
        if train_count + test_count > sum(sizes):
            raise SubsampleError(f"split asks for {train_count} train + {test_count} test images but only "
                                 f"{sum(sizes)} remain after subsampling; "
                                 + _count_hint(sizes, train_count, test_count))
        n_train, n_test = _count_quotas(sizes, train_count, test_count)
    for cls, a, b in zip(classes, n_train, n_test):
        if a == 0 or b == 0:
            raise SubsampleError(f"class {cls!r} gets {a} train / {b} test images; every class needs both")
    test = np.concatenate([p[:t] for p, t in zip(per_class, n_test)])
    train = np.concatenate([p[t:t + a] for p, t, a in zip(per_class, n_test, n_train)])
    return np.sort(train), np.sort(test)


def grouped_split(labels: Sequence[str], groups: Sequence[str], classes: Sequence[str], caps: Mapping[str, int], *,
                  seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Like ``subsample_split`` with a test fraction, but all images of a group (a HAM10000 lesion) land on
    the same side, so no lesion is seen in training and tested. Caps still count images. Per class,
    whole groups in random order go to test until it holds round(n_c * test_fraction) images or more."""
    rng = np.random.default_rng(seed)
    labels_arr, groups_arr = np.asarray(labels, dtype=object), np.asarray(groups, dtype=object)
    train, test = [], []
    for cls in classes:
        idx = _kept(labels_arr, cls, caps, rng)
        target = int(np.floor(len(idx) * test_fraction + 0.5))
        chosen: set = set()
        n_test = 0
        for group in rng.permutation(np.unique(groups_arr[idx])):
            if n_test >= target:
                break
            chosen.add(group)
            n_test += int((groups_arr[idx] == group).sum())
        in_test = np.array([g in chosen for g in groups_arr[idx]], dtype=bool)
        if in_test.all() or not in_test.any():
            raise SubsampleError(f"class {cls!r}: its {len(np.unique(groups_arr[idx]))} groups cannot be split "
                                 "into non-empty train and test sides")
        test.append(idx[in_test])
        train.append(idx[~in_test])
    train_idx, test_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    shared = set(groups_arr[train_idx]) & set(groups_arr[test_idx])
    if shared:
        raise SubsampleError(f"group {sorted(shared)[0]!r} has images of several classes, so it cannot sit on one "
                             "side; the lesion metadata disagrees with the labels")
    return train_idx, test_idx
