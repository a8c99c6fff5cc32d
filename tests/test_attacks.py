"""Tests for pipeline_src.attacks (FGSM, I-FGSM, C&W-L2, helpers, dispatcher).

All models are tiny and built here; every test runs in well under 10 s on CPU.
Reference checks against foolbox 3.3.4 are skipped when foolbox is missing.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipeline_src.attacks import CWResult, cw_l2, fgsm, ifgsm, run_attack, success_rate, to_uint8


# --------------------------------------------------------------------------- fixtures / tiny models


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny models run fastest on one thread, and it keeps timings stable on busy machines."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class _Normalize(nn.Module):
    """Stand-in for the in-model normalisation of the real models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25


def _small_cnn(seed: int = 0, channels: int = 3, classes: int = 10, size: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    feat = 16 * (size // 4) ** 2
    return nn.Sequential(
        _Normalize(),
        nn.Conv2d(channels, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(feat, classes),
    ).eval()


@pytest.fixture(scope="module")
def cnn_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Small random CNN, 64 images of 3x16x16 strictly inside (0, 1), labels = clean predictions."""
    model = _small_cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 16, 16, generator=g) * 0.9 + 0.05
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def _toy_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 1x8x8 images, separable but not linearly: class 1 carries a
    +-checkerboard of amplitude 0.12 (either sign), class 0 none; plus noise.

    The non-linear decision rule is what lets I-FGSM beat single-step FGSM.
    """
    g = torch.Generator().manual_seed(seed)
    pattern = torch.where(torch.arange(64) % 2 == 0, 1.0, -1.0).view(1, 1, 8, 8)
    y = torch.randint(0, 2, (n,), generator=g)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    amplitude = torch.where(y == 1, 0.12 * sign, torch.zeros(n)).view(-1, 1, 1, 1)
    x = 0.5 + amplitude * pattern + 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained_toy() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(_Normalize(), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    x_train, y_train = _toy_problem(512, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        opt.step()
    model.eval()
    x_test, y_test = _toy_problem(256, seed=1)
    return model, x_test, y_test


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 1.0 - success_rate(model, x, y)


# --------------------------------------------------------------------------- FGSM / I-FGSM


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_fgsm_ifgsm_stay_in_eps_ball_and_box(cnn_batch, eps):
    model, x, y = cnn_batch
    # include pixels at the box borders so clipping is exercised
    x = x.clone()
    x[:, :, 0, :] = 0.0
    x[:, :, -1, :] = 1.0
    for x_adv in (fgsm(model, x, y, eps), ifgsm(model, x, y, eps)):
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert (x_adv - x).abs().max().item() <= eps + 1e-6
        assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


def test_fgsm_perturbation_is_exactly_eps_where_not_clipped(cnn_batch):
    model, x, y = cnn_batch
    eps = 8 / 255
    x_adv = fgsm(model, x, y, eps)
    # x is in [0.05, 0.95] so no pixel is clipped at eps = 8/255
    delta = x_adv - x
    x_req = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x_req), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_req)
    nonzero = grad != 0
    assert nonzero.float().mean() > 0.99
    torch.testing.assert_close(delta[nonzero].abs(), torch.full_like(delta[nonzero], eps), atol=1e-6, rtol=0)
    assert torch.equal(delta[nonzero].sign(), grad[nonzero].sign())


def test_ifgsm_at_least_as_strong_as_fgsm(trained_toy):
    model, x, y = trained_toy
    clean_acc = _accuracy(model, x, y)
    assert clean_acc > 0.9  # the toy model has learned the problem
    for eps in (0.03, 0.06):
        acc_fgsm = _accuracy(model, fgsm(model, x, y, eps), y)
        acc_ifgsm = _accuracy(model, ifgsm(model, x, y, eps, steps=10), y)
        assert acc_fgsm < clean_acc  # FGSM does something at this eps ...
        assert acc_ifgsm <= acc_fgsm  # ... and the iterative attack is at least as strong


def test_attacks_leave_model_state_alone_and_work_under_no_grad(cnn_batch):
    model, x, y = cnn_batch
    flags = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():
        a = fgsm(model, x[:8], y[:8], 4 / 255)
        b = ifgsm(model, x[:8], y[:8], 4 / 255, steps=2)
        c = cw_l2(model, x[:8], y[:8], binary_search_steps=1, steps=5)
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not a.requires_grad and not b.requires_grad and not c.adversarial.requires_grad
    # inputs created under inference_mode are accepted (attacks copy them)
    with torch.inference_mode():
        x_inf = x[:4].clone()
    assert fgsm(model, x_inf, y[:4], 4 / 255).shape == x_inf.shape
    assert cw_l2(model, x_inf, y[:4], binary_search_steps=1, steps=3).adversarial.shape == x_inf.shape
    # the attack does not switch a model's mode either (eval is the caller's job)
    model.train()
    try:
        fgsm(model, x[:4], y[:4], 4 / 255)
        assert model.training
    finally:
        model.eval()


# --------------------------------------------------------------------------- C&W


def test_cw_linear_model_reaches_analytic_minimum():
    torch.manual_seed(0)
    d = 3 * 4 * 4
    lin = nn.Linear(d, 2)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(32, 3, 4, 4, generator=g) * 0.4 + 0.3
    with torch.no_grad():
        w = lin.weight[1] - lin.weight[0]
        # put the decision boundary through the middle of the data so points are close to it
        proj = x.flatten(1) @ w
        lin.bias.copy_(torch.tensor([0.0, -(proj.mean().item())]))
        margin = x.flatten(1) @ w + (lin.bias[1] - lin.bias[0])
        y = (margin > 0).long()
        dist = margin.abs() / w.norm()
        # the orthogonal projection onto the hyperplane lies inside the box, so
        # dist is the true minimum-L2 adversarial distance within [0, 1]
        foot = x.flatten(1) - (margin / w.square().sum()).unsqueeze(1) * w
        assert foot.min() >= 0 and foot.max() <= 1
    res = cw_l2(model, x, y, binary_search_steps=5, steps=1000)
    assert isinstance(res, CWResult)
    assert res.success.all()
    with torch.no_grad():
        assert (model(res.adversarial).argmax(1) != y).all()
    l2 = (res.adversarial - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(res.l2, l2)
    assert dist.min() > 0.01 and dist.max() < 0.4
    ratio = res.l2 / dist
    # cannot beat the analytic minimum ...
    assert (ratio >= 1 - 1e-4).all()
    # ... and gets close to it. Adam's first steps move every tanh-space coordinate by
    # ~stepsize (sign-like), i.e. ~0.005 * sqrt(48) ~ 0.035 in L2 here, so points closer
    # than that to the boundary can be "found" by the first transient crossing and keep
    # that larger L2 (same in foolbox); hence the tight bound only applies beyond it.
    far = dist >= 0.05
    assert far.sum() >= 16
    assert (ratio[far] <= 1.05).all(), ratio[far].max()
    assert ratio.median() <= 1.01
    assert (res.l2 - dist).max() <= 0.035


class _ConstantDominant(nn.Module):
    """Class 0 always wins inside [0, 1]: no adversarial exists (still input-dependent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 0.1 * x.flatten(1).mean(dim=1)
        return torch.stack([5.0 + s, s, -s], dim=1)


def test_cw_no_adversarial_returns_clean_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 4, 4, generator=g)
    y = torch.zeros(8, dtype=torch.long)
    res = cw_l2(_ConstantDominant(), x, y, binary_search_steps=3, steps=50)
    assert not res.success.any()
    assert torch.equal(res.adversarial, x)
    assert torch.equal(res.l2, torch.zeros(8))


def test_cw_confidence_margin(cnn_batch):
    model, x, y = cnn_batch
    kappa = 0.5
    res = cw_l2(model, x[:16], y[:16], binary_search_steps=3, steps=100, confidence=kappa, initial_const=1.0)
    assert res.success.any()
    with torch.no_grad():
        logits = model(res.adversarial[res.success])
    yy = y[:16][res.success]
    other = logits.clone()
    other[torch.arange(len(yy)), yy] = -math.inf
    margin = other.max(dim=1).values - logits[torch.arange(len(yy)), yy]
    assert (margin >= kappa - 1e-4).all()


# --------------------------------------------------------------------------- helpers / dispatcher


def test_to_uint8_and_success_rate(cnn_batch):
    model, x, y = cnn_batch
    q = to_uint8(torch.tensor([-0.1, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.2]))
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 0, 0, 2, 128, 255, 255]  # round half to even on exact halves
    assert success_rate(model, x, y) == 0.0  # labels are the clean predictions
    with torch.no_grad():
        wrong = (model(x).argmax(1) + 1) % 10
    assert success_rate(model, x, wrong) == 1.0
    # uint8 input is rescaled to [0, 1]
    assert success_rate(model, to_uint8(x), y) == success_rate(model, to_uint8(x).float() / 255, y)


def test_run_attack_batches_match_direct_calls(cnn_batch):
    model, x, y = cnn_batch
    eps = 8 / 255
    adv, stats = run_attack(model, x, y, "fgsm", eps=eps, batch_size=24)
    torch.testing.assert_close(adv, fgsm(model, x, y, eps), atol=1e-6, rtol=0)
    assert stats["success_rate_float"] == success_rate(model, adv, y)
    adv, stats = run_attack(model, x, y, "ifgsm", eps=eps, steps=5, batch_size=24)
    torch.testing.assert_close(adv, ifgsm(model, x, y, eps, steps=5), atol=1e-6, rtol=0)
    adv, stats = run_attack(model, x[:16], y[:16], "cw", binary_search_steps=2, steps=20, batch_size=16)
    res = cw_l2(model, x[:16], y[:16], binary_search_steps=2, steps=20)
    torch.testing.assert_close(adv, res.adversarial)
    assert stats["cw_success_rate"] == pytest.approx(res.success.float().mean().item())
    assert stats["mean_l2"] == pytest.approx(res.l2[res.success].mean().item(), rel=1e-5)
    assert stats["binary_search_steps"] == 2 and stats["initial_const"] == 1e-3
    for key in ("success_rate_float", "success_rate_uint8", "mean_l2"):
        assert key in stats


def test_run_attack_rejects_bad_arguments(cnn_batch):
    model, x, y = cnn_batch
    with pytest.raises(ValueError, match="deepfool"):
        run_attack(model, x, y, "deepfool", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        run_attack(model, x, y, "fgsm")
    with pytest.raises(ValueError, match="eps"):
        run_attack(model, x, y, "ifgsm", steps=10)
    with pytest.raises(ValueError, match="binary_search_steps"):
        run_attack(model, x, y, "fgsm", eps=0.1, binary_search_steps=5)
    with pytest.raises(ValueError, match="eps"):
        run_attack(model, x, y, "cw", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        run_attack(model, x, y, "fgsm", eps=8.0)  # forgot to divide by 255
    with pytest.raises(ValueError):
        fgsm(model, x * 2, y, 0.1)  # inputs outside [0, 1]


# --------------------------------------------------------------------------- foolbox 3.3.4 reference


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_fgsm_ifgsm_match_foolbox(cnn_batch, eps):
    fb = pytest.importorskip("foolbox")
    model, x, y = cnn_batch
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    ref, _, _ = fb.attacks.FGSM()(fmodel, x, y, epsilons=eps)
    torch.testing.assert_close(fgsm(model, x, y, eps), ref, atol=1e-5, rtol=0)
    bim = fb.attacks.LinfBasicIterativeAttack(rel_stepsize=0.1, abs_stepsize=None, steps=10, random_start=False)
    ref, _, _ = bim(fmodel, x, y, epsilons=eps)
    torch.testing.assert_close(ifgsm(model, x, y, eps, steps=10), ref, atol=1e-5, rtol=0)
    for p in model.parameters():  # foolbox's backward() fills parameter grads; reset for other tests
        p.grad = None


def test_cw_matches_foolbox(cnn_batch):
    fb = pytest.importorskip("foolbox")
    model, x, y = cnn_batch
    settings = dict(binary_search_steps=5, steps=100, stepsize=0.01, confidence=0.0, initial_const=1e-3, abort_early=True)
    ours = cw_l2(model, x, y, **settings)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    raw, _, fb_success = fb.attacks.L2CarliniWagnerAttack(**settings)(fmodel, x, y, epsilons=None)
    for p in model.parameters():
        p.grad = None
    # foolbox returns an all-zeros image where it failed (and a zeros image may happen
    # to be misclassified): count as found only non-placeholder successes.
    fb_found = fb_success & (raw.flatten(1).abs().sum(dim=1) > 0)
    assert fb_found.float().mean() > 0.5  # the comparison is meaningful
    assert abs(ours.success.float().mean().item() - fb_found.float().mean().item()) <= 0.02
    fb_l2 = (raw - x).flatten(1).norm(dim=1)[fb_found].mean().item()
    our_l2 = ours.l2[ours.success].mean().item()
    assert our_l2 == pytest.approx(fb_l2, rel=0.05)
    # where both succeed the images agree closely (the algorithms are the same)
    both = fb_found & ours.success
    assert (ours.adversarial[both] - raw[both]).abs().max().item() < 1e-3
