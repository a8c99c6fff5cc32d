"""Tests for the embedded synthetic datasets (pipeline_src/data/synthetic.py)."""
from __future__ import annotations

import time

import pytest
import torch

from pipeline_src.data.synthetic import SYNTHETIC_CHANNELS, SYNTHETIC_CLASSES, generate

NAMES = list(SYNTHETIC_CLASSES)


def _counts(name: str, n: int) -> dict[str, int]:
    return {c: n for c in SYNTHETIC_CLASSES[name]}


def test_public_tables() -> None:
    assert SYNTHETIC_CLASSES["synthetic-skin4"] == ("MEL", "NV", "BCC", "BKL")
    assert SYNTHETIC_CLASSES["synthetic-chest3"] == ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal")
    assert SYNTHETIC_CHANNELS == {"synthetic-skin4": 3, "synthetic-chest3": 1}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_dtypes_counts(name: str, size: int) -> None:
    classes = SYNTHETIC_CLASSES[name]
    counts = {c: i + 2 for i, c in enumerate(classes)}
    images, labels, names = generate(name, counts, size, seed=0)
    n = sum(counts.values())
    assert images.shape == (n, SYNTHETIC_CHANNELS[name], size, size)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert names == list(classes)
    assert torch.bincount(labels, minlength=len(classes)).tolist() == [counts[c] for c in classes]
    assert images.float().std() > 10  # not blank


@pytest.mark.parametrize("name", NAMES)
def test_missing_and_zero_counts(name: str) -> None:
    first = SYNTHETIC_CLASSES[name][0]
    images, labels, names = generate(name, {first: 3}, 16, seed=1)
    assert labels.tolist() == [0, 0, 0] and images.shape[0] == 3
    images, labels, _ = generate(name, {first: 0}, 16, seed=1)
    assert images.shape == (0, SYNTHETIC_CHANNELS[name], 16, 16) and labels.shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_seed_dependent(name: str) -> None:
    counts = _counts(name, 6)
    torch.manual_seed(123)
    a = generate(name, counts, 32, seed=7)
    torch.manual_seed(999)          # torch's global RNG must not matter
    torch.rand(10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # nor the thread count
    try:
        b = generate(name, counts, 32, seed=7)
    finally:
        torch.set_num_threads(threads)
    assert a[0].numpy().tobytes() == b[0].numpy().tobytes()
    assert torch.equal(a[1], b[1])
    c = generate(name, counts, 32, seed=8)
    assert not torch.equal(a[0], c[0])


def test_class_streams_are_independent() -> None:
    # changing one class's count leaves the images of the other classes unchanged (as a set)
    a_img, a_lab, _ = generate("synthetic-skin4", {"MEL": 4, "NV": 3}, 32, seed=0)
    b_img, b_lab, _ = generate("synthetic-skin4", {"MEL": 4, "NV": 9}, 32, seed=0)
    mel_a = sorted(x.numpy().tobytes() for x in a_img[a_lab == 0])
    mel_b = sorted(x.numpy().tobytes() for x in b_img[b_lab == 0])
    assert mel_a == mel_b


@pytest.mark.parametrize(("args", "match"), [
    (("synthetic-nope", {}, 32, 0), "unknown synthetic dataset"),
    (("synthetic-skin4", {"XYZ": 3}, 32, 0), "unknown class 'XYZ'"),
    (("synthetic-chest3", {"MEL": 3}, 32, 0), "unknown class 'MEL'"),
    (("synthetic-skin4", {"MEL": -1}, 32, 0), "negative count"),
    (("synthetic-chest3", {"Normal": 2}, 15, 0), "image_size"),
    (("synthetic-chest3", {"Normal": 2}, 8, 0), "image_size"),
])
def test_value_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(*args)


@pytest.mark.parametrize("name", NAMES)
def test_fast_enough(name: str) -> None:
    # the requirement is 1,000 images at 32 px in < 3 s on one core; 500 here keeps the test short,
    # with the same per-image budget and head room for a loaded CI machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        generate(name, {c: 500 // len(SYNTHETIC_CLASSES[name]) for c in SYNTHETIC_CLASSES[name]}, 32, seed=0)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert elapsed < 3.0, f"{name}: 500 images at 32 px took {elapsed:.2f} s"


@pytest.mark.parametrize("name", NAMES)
def test_classes_differ_but_overlap(name: str) -> None:
    """Class means differ, yet no single global pixel statistic separates the classes, and a linear
    classifier on raw pixels does not reach 100% on held-out images."""
    classes = SYNTHETIC_CLASSES[name]
    images, labels, _ = generate(name, _counts(name, 100), 32, seed=3)
    x = images.float() / 255
    means = torch.stack([x[labels == k].mean(0) for k in range(len(classes))])
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            assert (means[i] - means[j]).abs().mean() > 0.003, (classes[i], classes[j])
    # global statistics (mean brightness per channel, contrast): distributions overlap heavily
    stats = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
    for f in range(stats.shape[1]):
        per_class = [stats[labels == k, f] for k in range(len(classes))]
        lo = max(float(v.quantile(0.1)) for v in per_class)
        hi = min(float(v.quantile(0.9)) for v in per_class)
        assert hi > lo, f"feature {f} separates the classes' central 80%"
    # a linear softmax classifier on raw pixels (the 'too easy' check)
    torch.manual_seed(0)
    flat = (x.flatten(1) - 0.5) / 0.5
    n_train = int(0.75 * len(flat))
    w = torch.zeros(flat.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(flat[:n_train] @ w + b, labels[:n_train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = ((flat[n_train:] @ w + b).argmax(1) == labels[n_train:]).float().mean().item()
    chance = 1.0 / len(classes)
    assert chance < acc < 0.97, f"{name}: linear probe accuracy {acc:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_scene_independent_of_size(name: str) -> None:
    # scene parameters do not depend on the size: downsampled 64 px images match the 32 px ones closely
    a, la, _ = generate(name, _counts(name, 3), 32, seed=5)
    b, lb, _ = generate(name, _counts(name, 3), 64, seed=5)
    assert torch.equal(la, lb)
    down = torch.nn.functional.avg_pool2d(b.float(), 2)
    err = (down - a.float()).abs().mean().item()
    assert err < 12, f"mean abs difference {err:.1f} (0-255 scale)"
