"""Tests of the audit (issue 16): stronger transfer attacks, ensemble surrogate, Square Attack, AutoAttack,
sanity checks, the audit tables and the audit's params.

Everything runs on tiny models and tensors built here, on the CPU. References: ART's MomentumIterativeMethod and
ProjectedGradientDescent (MI-FGSM, PGD), pyautoattack's SquareAttack and AutoAttack, closed forms for linear models.
"""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_src.attacks import _input_grad, pgd
from pipeline_src.config import AuditConfig, ParamsError, load_params, validate_params
from pipeline_src.models.ensemble import EnsembleSurrogate
from pipeline_src.plan import build_plan
from pipeline_src.sanity import (autoattack_vs_pgd, eps_monotone, gradient_masking, iterative_vs_single,
                                 unbounded_reaches_zero, whitebox_vs_transfer, worst_case)
from pipeline_src.square import p_schedule, square_attack
from pipeline_src.strong_attacks import (DiversityDraw, di_fgsm, diversity_draws, diversity_size, input_diversity,
                                         margin_pgd, mi_fgsm)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _cnn(classes: int = 4, seed: int = 0, size: int = 16) -> nn.Module:
    """Tiny CNN that pools adaptively (so DI-FGSM's padded inputs fit), like the project's classifiers."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 16, classes)).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = _cnn()
    x = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    x[0, :, :4] = 0.0  # pixels on the box's faces: clipping must hold there too
    x[1, :, :4] = 1.0
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# --------------------------------------------------------------------------- eps ball and box


def _ensemble() -> nn.Module:
    return EnsembleSurrogate([_cnn(seed=0), _cnn(seed=1), _cnn(seed=2)]).eval()


ATTACKS = {
    "mi_fgsm": lambda m, x, y, eps: mi_fgsm(m, x, y, eps),
    "di_fgsm": lambda m, x, y, eps: di_fgsm(m, x, y, eps, generator=torch.Generator().manual_seed(0)),
    "m_di2_fgsm": lambda m, x, y, eps: di_fgsm(m, x, y, eps, p=1.0, decay=1.0, generator=torch.Generator().manual_seed(0)),
    "square": lambda m, x, y, eps: square_attack(m, x, y, eps, 50, generator=torch.Generator().manual_seed(0)).adversarial,
    "ensemble_mi_fgsm": lambda m, x, y, eps: mi_fgsm(_ensemble(), x, y, eps),
    "margin_pgd": lambda m, x, y, eps: margin_pgd(m, x, y, eps, steps=10),
}


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255, 0.3])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_new_attacks_stay_in_eps_ball_and_box(batch, name, eps):
    model, x, y = batch
    x_adv = ATTACKS[name](model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not torch.equal(x_adv, x)  # it did something
    assert _accuracy(model, x_adv, y) <= _accuracy(model, x, y) if name != "ensemble_mi_fgsm" else True


# --------------------------------------------------------------------------- MI-FGSM / PGD against ART


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_mi_fgsm_and_pgd_match_art(batch, eps):
    art_evasion = pytest.importorskip("art.attacks.evasion")
    from art.estimators.classification import PyTorchClassifier

    model, x, y = batch
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=4,
                            clip_values=(0.0, 1.0), device_type="cpu")
    ref = art_evasion.MomentumIterativeMethod(clf, eps=eps, eps_step=eps / 10, decay=1.0, max_iter=10, batch_size=64,
                                              verbose=False).generate(x.numpy(), y.numpy())
    ours = mi_fgsm(model, x, y, eps, steps=10, decay=1.0)
    assert torch.allclose(ours, torch.from_numpy(ref), atol=1e-6, rtol=0)
    # momentum matters: without it the same loop is I-FGSM, and differs from MI-FGSM somewhere
    assert not torch.allclose(mi_fgsm(model, x, y, eps, steps=10, decay=0.0), ours, atol=1e-6, rtol=0)
    ref = art_evasion.ProjectedGradientDescent(clf, eps=eps, eps_step=2.5 * eps / 20, max_iter=20, num_random_init=0,
                                               batch_size=64, verbose=False).generate(x.numpy(), y.numpy())
    assert torch.allclose(pgd(model, x, y, eps, steps=20, random_init=False), torch.from_numpy(ref), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- DI-FGSM in closed form


class _PaddedLinear(nn.Module):
    """logits = W vec(pad_to(z, S)) + b: a linear model accepting the clean size W and the padded size S."""

    def __init__(self, channels: int, size: int, classes: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.size = size
        self.weight = nn.Parameter(torch.randn(classes, channels * size * size, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(classes, generator=g, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = F.pad(z, (0, self.size - z.shape[-1], 0, self.size - z.shape[-2]))
        return z.flatten(1) @ self.weight.T + self.bias


def _closed_form_grad(model: _PaddedLinear, x: torch.Tensor, y: torch.Tensor, draw: DiversityDraw) -> torch.Tensor:
    """d CE(W T(x) + b) / dx written out: g_z = W^T (softmax - onehot) on the padded grid, pulled back through
    the resize (input pixel i feeds output pixels u with floor(u W / rnd) = i) and the padding offset."""
    n, c, w, _ = x.shape
    s = model.size
    if draw.apply:
        idx = [(u * w) // draw.size for u in range(draw.size)]
        z = torch.zeros(n, c, s, s, dtype=x.dtype)
        for u in range(draw.size):
            for v in range(draw.size):
                z[:, :, draw.top + u, draw.left + v] = x[:, :, idx[u], idx[v]]
    else:
        z = F.pad(x, (0, s - w, 0, s - w))
    p = torch.softmax(z.flatten(1) @ model.weight.detach().T + model.bias.detach(), dim=1)
    g_z = ((p - F.one_hot(y, p.shape[1]).to(p.dtype)) @ model.weight.detach()).view(n, c, s, s)
    g_x = torch.zeros_like(x)
    if draw.apply:
        for u in range(draw.size):
            for v in range(draw.size):
                g_x[:, :, idx[u], idx[v]] += g_z[:, :, draw.top + u, draw.left + v]
    else:
        g_x = g_z[:, :, :w, :w].clone()
    return g_x


def test_di_fgsm_matches_the_closed_form_of_a_linear_model():
    w, steps, eps = 8, 10, 8 / 255
    out = diversity_size(w, 1.5)
    model = _PaddedLinear(2, out, 3, seed=0)
    x = torch.rand(5, 2, w, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    draws = diversity_draws(steps, w, p=0.5, resize_rate=1.5, generator=torch.Generator().manual_seed(7))
    assert diversity_draws(steps, w, p=0.5, resize_rate=1.5, generator=torch.Generator().manual_seed(7)) == draws
    assert {d.apply for d in draws} == {True, False}  # both branches are exercised
    assert len({d.size for d in draws if d.apply}) > 1 and any(d.top or d.left for d in draws if d.apply)
    ours = di_fgsm(model, x, y, eps, steps, resize_rate=1.5, generator=torch.Generator().manual_seed(7))
    x_ref = x.clone()
    for draw in draws:
        g = _closed_form_grad(model, x_ref, y, draw)
        assert torch.allclose(_input_grad(lambda z, d=draw: model(input_diversity(z, d, out)), x_ref, y), g)
        x_ref = torch.clamp(x + torch.clamp(x_ref + eps / steps * g.sign() - x, -eps, eps), 0, 1)
    assert torch.equal(ours, x_ref)
    # the transform matters: another seed gives other images
    assert not torch.equal(ours, di_fgsm(model, x, y, eps, steps, resize_rate=1.5,
                                         generator=torch.Generator().manual_seed(8)))


def test_input_diversity_is_nearest_resize_and_zero_pad():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    z = input_diversity(x, DiversityDraw(True, 6, 1, 0), 7)
    assert z.shape == (1, 1, 7, 7)
    assert torch.equal(z[0, 0, 0], torch.zeros(7)) and torch.equal(z[0, 0, :, 6], torch.zeros(7))
    assert torch.equal(z[0, 0, 1, :6], torch.tensor([0.0, 0, 1, 2, 2, 3]))  # floor(u * 4 / 6)
    assert input_diversity(x, DiversityDraw(False, 6, 1, 0), 7) is x
    with pytest.raises(ValueError, match="does not fit"):
        input_diversity(x, DiversityDraw(True, 7, 1, 0), 7)


def test_di_fgsm_does_not_depend_on_the_batch_size(batch):
    from pipeline_src.audit import run_transfer_attack
    from pipeline_src.config import AuditTransfer

    model, x, y = batch
    attack = AuditTransfer("di", "di_fgsm", 8.0, 10, 0.8, 0.0)
    whole = run_transfer_attack(model, x, y, attack, seed=3, batch_size=64)
    assert torch.equal(whole, run_transfer_attack(model, x, y, attack, seed=3, batch_size=5))
    assert not torch.equal(whole, run_transfer_attack(model, x, y, attack, seed=4, batch_size=64))


# --------------------------------------------------------------------------- ensemble surrogate


def test_ensemble_gradient_is_the_gradient_of_the_mean_logits(batch):
    _, x, y = batch
    members = [_cnn(seed=s) for s in range(3)]
    ensemble = EnsembleSurrogate(members).eval()
    xr = x.clone().requires_grad_(True)
    mean_logits = sum(m(xr) for m in members) / 3
    (expected,) = torch.autograd.grad(F.cross_entropy(mean_logits, y, reduction="sum"), xr)
    assert torch.allclose(_input_grad(ensemble, x, y), expected, atol=1e-6)
    # and in closed form for linear members: the gradient of the mean is W_mean^T (softmax(W_mean x) - onehot)
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(3, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    linear = [nn.Linear(12, 3, bias=False).double() for _ in weights]
    for layer, w in zip(linear, weights):
        layer.weight.data = w
    xl = torch.rand(4, 12, generator=g, dtype=torch.float64)
    yl = torch.tensor([0, 1, 2, 1])
    w_mean = sum(weights) / 3
    closed = (torch.softmax(xl @ w_mean.T, 1) - F.one_hot(yl, 3)) @ w_mean
    assert torch.allclose(_input_grad(EnsembleSurrogate(linear), xl, yl), closed)


def test_ensemble_rejects_members_that_disagree():
    ensemble = EnsembleSurrogate([_cnn(classes=4), _cnn(classes=3)])
    with pytest.raises(ValueError, match="disagree"):
        ensemble(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="at least one"):
        EnsembleSurrogate([])


# --------------------------------------------------------------------------- Square Attack


def test_square_attack_finds_an_adversarial_for_a_linear_model_where_one_exists():
    """Binary linear model on 1x8x8 images in (0.25, 0.75): the best L_inf attack lowers the margin by exactly
    eps * ||w||_1 (no clipping binds: eps = 0.05), so an adversarial exists iff margin < eps * ||w||_1."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, generator=g)
    eps = 0.05
    reach = eps * float(w.abs().sum())

    class Linear2(nn.Module):
        def forward(self, x):
            s = x.flatten(1) @ w
            return torch.stack([s, -s], dim=1)  # margin of class 0 = 2 s

    x = torch.rand(200, 1, 8, 8, generator=g) * 0.5 + 0.25
    s = x.flatten(1) @ w
    y = torch.where(s > 0, 0, 1)
    score = s.abs()  # the attack can move s by at most eps * ||w||_1 = reach
    easy = score < 0.5 * reach  # an adversarial exists with room to spare
    impossible = score > reach
    assert easy.sum() >= 10 and impossible.sum() >= 10
    result = square_attack(Linear2(), x, y, eps, 300, generator=torch.Generator().manual_seed(1))
    assert bool(result.success[easy].all())
    assert not bool(result.success[impossible].any())
    assert (result.adversarial - x).abs().max() <= eps + 1e-6
    # the reference's window never reaches the last row and column, and misses one here even with 10x the queries
    reference = square_attack(Linear2(), x, y, eps, 3000, reference_window=True,
                              generator=torch.Generator().manual_seed(1))
    assert not bool(reference.success[easy].all())


def test_square_attack_matches_pyautoattack(batch):
    square_ref = pytest.importorskip("pyautoattack.square")
    model, x, y = batch
    y = y.clone()
    y[:3] = (y[:3] + 1) % 4  # some images wrong from the start: left alone by both
    for queries, p_init in ((100, 0.8), (300, 0.05)):
        ours = square_attack(model, x, y, 4 / 255, queries, p_init=p_init, reference_window=True,
                             generator=torch.Generator().manual_seed(5))
        ref = square_ref.SquareAttack(model, norm="Linf", n_queries=queries, eps=4 / 255, p_init=p_init, seed=5,
                                      device="cpu", resc_schedule=True).perturb(x, y)
        assert torch.equal(ours.adversarial, ref)
        assert 0 < int(ours.success[3:].sum()) < len(y) - 3  # a partial success: the comparison means something


def test_square_schedule_and_argument_checks(batch):
    assert p_schedule(0, 0.8, 1000) == 0.8 and p_schedule(2, 0.8, 1000) == 0.4  # 2/1000 * 10000 = 20 > 10
    assert p_schedule(9999, 0.8, 10000, rescale=False) == 0.8 / 512
    model, x, y = batch
    with pytest.raises(ValueError, match="p_init"):
        square_attack(model, x, y, 0.1, 10, p_init=0.0)
    res = square_attack(model, x[:0], y[:0], 0.1, 10)
    assert res.adversarial.shape[0] == 0


# --------------------------------------------------------------------------- AutoAttack


# 3 classes (APGD-DLR instead of the targeted APGD; plan() is checked below for both) in `make test` only: each
# case runs the whole AutoAttack, ~12 s of the edit loop
@pytest.mark.parametrize("classes, eps", [(4, 6 / 255), pytest.param(3, 16 / 255, marks=pytest.mark.heavy)])
def test_autoattack_at_most_pgd20_on_the_same_images(classes, eps):
    pytest.importorskip("pyautoattack")
    from pipeline_src.autoattack import autoattack, plan

    model = _cnn(classes=classes, seed=3)
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model(x).argmax(1)
    # eps: most images fall (the package spends its time on the robust ones), not all (see the end)
    state = torch.random.get_rng_state()
    result = autoattack(model, x, y, eps, seed=0, batch_size=8)
    assert torch.equal(torch.random.get_rng_state(), state)  # the package's global seeding does not leak
    assert result.attacks == plan(classes)[0] and result.targets == classes - 1
    assert (result.adversarial - x).abs().max() <= eps + 1e-6
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    x_pgd = pgd(model, x, y, eps, steps=20, generator=torch.Generator().manual_seed(0))
    aa_acc, pgd_acc = _accuracy(model, result.adversarial, y), _accuracy(model, x_pgd, y)
    assert aa_acc == pytest.approx(1 - float(result.success.float().mean()))
    assert aa_acc <= pgd_acc
    assert 0 < pgd_acc < 1  # a comparison with room on both sides


def test_autoattack_plan_below_ten_classes():
    from pipeline_src.autoattack import plan

    assert plan(10) == (("apgd-ce", "apgd-t", "fab-t", "square"), 9)
    assert plan(4) == (("apgd-ce", "apgd-t", "fab-t", "square"), 3)
    assert plan(3) == (("apgd-ce", "apgd-dlr", "fab-t", "square"), 2)
    assert plan(2) == (("apgd-ce", "fab-t", "square"), 1)
    with pytest.raises(ValueError, match="version"):
        plan(4, "plus")


# --------------------------------------------------------------------------- sanity checks


class _Quantise(nn.Module):
    """A non-differentiable front end: round to 8 levels (its gradient is zero almost everywhere)."""

    def forward(self, x):
        return torch.round(x * 7) / 7


def _flags(model, x_adv, y) -> list[bool]:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).tolist()


def test_gradient_masking_is_flagged_for_a_quantised_model_and_not_for_the_plain_one():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = 16 / 255
    for name, model in (("masked", nn.Sequential(_Quantise(), classifier).eval()), ("plain", classifier)):
        with torch.no_grad():
            y = model(x).argmax(1)
        gradient = worst_case([_flags(model, pgd(model, x, y, eps, steps=20, generator=torch.Generator().manual_seed(0)), y),
                               _flags(model, mi_fgsm(model, x, y, eps), y)])
        square = _flags(model, square_attack(model, x, y, eps, 300, generator=torch.Generator().manual_seed(0)).adversarial, y)
        check = gradient_masking(sum(square), sum(gradient), len(y), threshold=10)
        unbounded = unbounded_reaches_zero(sum(_flags(model, margin_pgd(model, x, y, 1.0, steps=50), y)), len(y))
        if name == "masked":
            assert check.failed, check.detail  # Square sees through the quantisation, the gradient does not
            assert check.values["gap_points"] > 10
            assert unbounded.failed  # a zero gradient cannot even reach 0% with the whole box
        else:
            assert not check.failed, check.detail
            assert not unbounded.failed, unbounded.detail


def test_unbounded_margin_pgd_reaches_zero_where_cross_entropy_saturates():
    """A confident linear model (logit margins in the hundreds): the cross-entropy's gradient underflows to exactly
    zero in float32, so PGD on it cannot move even with the whole box; the margin loss's gradient does not vanish."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).eval()
    model[1].weight.data = torch.randn(3, 48, generator=g) * 60
    x = torch.rand(16, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
        top2 = model(x).topk(2).values
    assert ((top2[:, 0] - top2[:, 1]) > 20).sum() >= 4  # saturated images exist
    assert torch.count_nonzero(_input_grad(model, x, y).flatten(1).abs().sum(1) == 0) >= 4
    ce = _flags(model, pgd(model, x, y, 1.0, steps=50, random_init=False), y)
    margin = _flags(model, margin_pgd(model, x, y, 1.0, steps=50), y)
    assert sum(ce) >= 4 and unbounded_reaches_zero(sum(ce), len(y)).failed
    assert sum(margin) == 0 and not unbounded_reaches_zero(sum(margin), len(y)).failed


def test_eps_monotone_tolerates_one_image_and_reports_transfer():
    assert eps_monotone({"pgd": {4.0: 10, 8.0: 11}}, 32).status == "pass"
    failed = eps_monotone({"pgd": {4.0: 10, 8.0: 12}, "fgsm": {4.0: 20, 8.0: 15}}, 32)
    assert failed.failed and "pgd: 10/32 at eps 4 -> 12/32 at eps 8 (+2 images)" in failed.detail
    assert "fgsm" not in failed.detail
    assert eps_monotone({"pgd": {4.0: 10, 8.0: 12}}, 32, enforce=False).status == "note"
    assert eps_monotone({"pgd": {8.0: 3}}, 32).status == "n/a"
    assert eps_monotone({"pgd": {2.0: 5, 4.0: 4, 8.0: 7}}, 32).failed  # 2 -> 8 rises by two


def test_iterative_whitebox_and_unbounded_checks():
    assert iterative_vs_single({4.0: 10, 8.0: 6}, {"pgd": {4.0: 9, 8.0: 6}, "ifgsm": {4.0: 10}}, 32).status == "pass"
    weaker = iterative_vs_single({4.0: 10}, {"pgd": {4.0: 11}}, 32)
    assert weaker.failed and "pgd 11/32 > fgsm 10/32 at eps 4" in weaker.detail
    assert iterative_vs_single({}, {"pgd": {4.0: 1}}, 32).status == "n/a"
    assert whitebox_vs_transfer({8.0: 3}, {8.0: 3, 4.0: 9}, 32).status == "pass"
    assert whitebox_vs_transfer({8.0: 4}, {8.0: 3}, 32).failed
    assert autoattack_vs_pgd({8.0: 4}, {8.0: 3}, 32).failed and autoattack_vs_pgd({8.0: 3}, {4.0: 3}, 32).status == "n/a"
    assert unbounded_reaches_zero(0, 32).status == "pass"
    assert unbounded_reaches_zero(1, 32).failed
    assert unbounded_reaches_zero(None, 32).status == "n/a"
    assert gradient_masking(10, 13, 30, threshold=10).status == "pass"   # exactly 10 points: not more than
    assert gradient_masking(9, 13, 30, threshold=10).failed               # 13.3 points
    assert gradient_masking(None, 13, 30).status == "n/a"
    assert worst_case([[True, True, False], [True, False, True]]) == [True, False, False]
    with pytest.raises(ValueError, match="not the same images"):
        worst_case([[True], [True, False]])


# --------------------------------------------------------------------------- params


def _params(**audit) -> dict:
    cfg = load_params("params.yaml")
    cfg["audit"] = {**cfg["audit"], **audit}
    return cfg


def test_audit_params_resolve():
    cfg = validate_params(load_params("params.yaml"))
    au = AuditConfig.from_params(cfg)
    assert au.max_images == cfg["whitebox"]["max_images"]  # the same images as the white-box stage
    assert [a.name for a in au.transfer] == list(cfg["audit"]["transfer"])
    mi = au.transfer_by_name("mi_fgsm_eps8")
    assert (mi.steps, mi.stepsize, mi.decay, mi.surrogate) == (10, 0.8, 1.0, "surrogate")
    assert au.transfer_by_name("di_fgsm_eps4").decay == 0.0
    assert au.square_column == "square_eps8"
    assert au.autoattack_columns() == {"autoattack_eps4": 4.0, "autoattack_eps8": 8.0}
    assert au.ensemble_archs == ("resnet18", "vgg16", "mobilenetv2")
    # a minimal section gets every default
    minimal = validate_params(_params() | {"audit": {"enabled": True, "max_images": 16}})
    assert AuditConfig.from_params(minimal).square_queries == 1000


@pytest.mark.parametrize("audit, message", [
    ({"transfer": {"x": {"method": "mi_fgsm", "eps": 8, "p": 0.5}}}, "'audit.transfer.x.p' does not apply to method mi_fgsm"),
    ({"transfer": {"fgsm_eps8": {"method": "mi_fgsm", "eps": 8}}}, "'audit.transfer.fgsm_eps8' reuses the name"),
    ({"tables": ["nope"]}, "'audit.tables' names 'nope'"),
    ({"ensemble": {"archs": ["vgg16", "mobilenetv2"]}}, "lacks the surrogate's arch 'resnet18'"),
    ({"square": {"queries": 0}}, "'audit.square.queries' = 0 must be >= 1"),
    ({"max_images": 0}, "'audit.max_images' = 0 (0 = all) exceeds 'whitebox.max_images' = 32"),
    ({"max_images": 64}, "'audit.max_images' = 64"),
    ({"ensemble": {"archs": ["resnet18", "densenet"]}}, "'audit.ensemble.archs[1]'"),
])
def test_bad_audit_params_name_the_key(audit, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params(_params(**audit))


# --------------------------------------------------------------------------- MobileNetV2


def test_mobilenetv2_matches_torchvision_and_fits_the_denoising_classifier():
    from torchvision.models import mobilenet_v2

    from pipeline_src.models import ModelSpec, build_model
    from pipeline_src.models.mobilenet import MobileNetV2

    ours, ref = MobileNetV2(num_classes=5).eval(), mobilenet_v2(num_classes=5).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)
    for stage, down, channels in (("stride4", 4, 24), ("stride8", 8, 32), ("stride16", 16, 96)):
        model = build_model(ModelSpec("mobilenetv2", 3, 1, 32, stage)).eval()
        out = model.outputs(torch.rand(2, 1, 32, 32))
        assert out.logits.shape == (2, 3) and out.reconstruction.shape == (2, 1, 32, 32)
        assert model.downsample == down and model.encoder(torch.rand(1, 3, 32, 32)).shape[1] == channels
    with pytest.raises(ValueError, match="decoder_stage for mobilenetv2"):
        build_model(ModelSpec("mobilenetv2", 3, 1, 32, "layer1"))


# --------------------------------------------------------------------------- audit tables (hand-made records)


def _record(path, flags: dict[str, list[bool]], lambda_n=0, lambda_a=0, indices=None) -> str:
    from pipeline_src.evaluate import encode_flags

    n = len(next(iter(flags.values())))
    rec = {"arch": "resnet18", "lambda_n": lambda_n, "lambda_a": lambda_a, "seed": 0, "n_test": n,
           "accuracy": {k: sum(v) / n for k, v in flags.items()}, "correct": {k: sum(v) for k, v in flags.items()},
           "correct_flags": {k: encode_flags(v) for k, v in flags.items()}}
    if indices is not None:
        rec["test_indices"] = indices
    path.write_text(json.dumps(rec))
    return str(path)


def _table_cfg() -> dict:
    cfg = load_params("params.yaml")
    cfg["attacks"] = {"fgsm_eps4": {"method": "fgsm", "eps": 4}, "fgsm_eps8": {"method": "fgsm", "eps": 8},
                      "cw": cfg["attacks"]["cw"]}
    cfg["whitebox"]["attacks"] = {"fgsm_eps8": {"method": "fgsm", "eps": 8},
                                  "pgd20_eps4": {"method": "pgd", "eps": 4, "steps": 20},
                                  "pgd20_eps8": {"method": "pgd", "eps": 8, "steps": 20}}
    cfg["audit"]["transfer"] = {"mi_fgsm_eps8": {"method": "mi_fgsm", "eps": 8},
                                "ens_mi_fgsm_eps8": {"method": "mi_fgsm", "eps": 8, "surrogate": "ensemble"}}
    cfg["audit"]["autoattack"] = {"eps": [8]}
    return validate_params(cfg)


T, F_ = True, False


def test_audit_table_worst_case_subset_and_checks(tmp_path):
    from pipeline_src.audit_tables import build_audit_table, load_row, threat_columns

    cfg = _table_cfg()
    cols = threat_columns(cfg)
    assert {(c.column, c.threat) for c in cols} >= {("fgsm_eps4", "transfer"), ("mi_fgsm_eps8", "strong_transfer"),
                                                    ("ens_mi_fgsm_eps8", "ensemble_transfer"),
                                                    ("pgd20_eps8", "whitebox"), ("square_eps8", "square"),
                                                    ("autoattack_eps8", "autoattack")}
    assert "cw" not in {c.column for c in cols}  # no eps: not part of a threat model at an eps
    # 8 test images; white-box attacked images 0, 2, 4, 6, 7; the audit 0, 2, 4, 6
    ev = _record(tmp_path / "ev.json", {"clean": [T] * 8, "fgsm_eps4": [T, F_, T, F_, T, F_, T, T],
                                         "fgsm_eps8": [T, F_, T, F_, F_, F_, T, T], "cw": [F_] * 8})
    # the white-box FGSM shares its name with the transfer set (fgsm_eps8) and differs from it on image 0
    wb = _record(tmp_path / "wb.json", {"clean": [T] * 5, "fgsm_eps8": [F_, T, F_, T, T],
                                         "pgd20_eps4": [T, T, F_, T, F_], "pgd20_eps8": [F_, T, T, F_, T]},
                 indices=[0, 2, 4, 6, 7])
    au = _record(tmp_path / "au.json", {"clean": [T, T, T, F_], "mi_fgsm_eps8": [T, T, F_, T],
                                         "ens_mi_fgsm_eps8": [T, F_, T, T], "square_eps8": [F_, F_, F_, F_],
                                         "autoattack_eps8": [F_, T, F_, F_], "pgd_unbounded": [F_, F_, F_, T]},
                 indices=[0, 2, 4, 6])
    row = load_row([au], ev, wb, cols)
    assert row.n == 4 and row.flags["transfer:fgsm_eps8"] == [T, T, F_, T]  # evaluation restricted to 0, 2, 4, 6
    assert row.flags["whitebox:fgsm_eps8"] == [F_, T, F_, T]  # white-box restricted to the audit's images,
    assert row.flags["whitebox:pgd20_eps8"] == [F_, T, T, F_]  # not written over the transfer set of that name
    table = build_audit_table([row], cols, AuditConfig.from_params(cfg))
    line = table.iloc[0]
    # worst case with the clean image: fgsm_eps8 [T,T,F,T] and clean [T,T,T,F] leave images 0 and 2
    assert line["clean"] == 75.0 and line["transfer_eps8"] == 50.0 and line["strong_transfer_eps8"] == 50.0
    assert line["whitebox_eps8"] == 25.0  # fgsm [F,T,F,T] and pgd [F,T,T,F]: only image 2 survives both
    assert line["strongest_eps8"] == 0.0 and line["square_eps8"] == 0.0
    assert line["strongest_eps8_attack"] == "square_eps8"
    low, high = line["whitebox_eps8_ci_low"], line["whitebox_eps8_ci_high"]
    assert low < 25.0 < high and high - low > 40  # Wilson on 1/4
    assert line["check_eps_monotone"] == "pass"  # pgd 2/4 at eps 4 -> 2/4 at eps 8
    assert line["check_iterative_vs_single"] == "pass"  # pgd 2/4 <= fgsm 2/4 at eps 8
    # transfer = the worst case over every transfer threat (with the real FGSM set, not the white-box one: 0%)
    assert "white-box 25.0% <= transfer 25.0% @8" in line["check_whitebox_vs_transfer_detail"]
    assert line["check_whitebox_vs_transfer"] == "pass"
    # AutoAttack 1/4 vs PGD-20 2/4 at eps 8; no AutoAttack at eps 4
    assert line["check_autoattack_vs_pgd"] == "pass" and "@4" not in line["check_autoattack_vs_pgd_detail"]
    assert line["check_unbounded_reaches_zero"] == "fail" and "1/4" in line["check_unbounded_reaches_zero_detail"]
    assert line["check_gradient_masking"] == "fail"  # Square 0% vs best gradient attack 25%: 25 points > 10
    assert "25.0 points" in line["check_gradient_masking_detail"]
    assert line["check_transfer_eps_monotone"] == "pass"

    # the white-box stage attacked fewer images than the audit: a clear message, not a silent mismatch
    small = _record(tmp_path / "wb_small.json", {"fgsm_eps8": [T, T], "pgd20_eps4": [T, T], "pgd20_eps8": [T, T]},
                    indices=[0, 2])
    with pytest.raises(ValueError, match="whitebox.max_images"):
        load_row([au], ev, small, cols)
    other = _record(tmp_path / "au_other.json", {"clean": [T] * 4}, lambda_n=1, indices=[0, 2, 4, 6])
    with pytest.raises(ValueError, match="not records of the same model"):
        load_row([au, other], ev, wb, cols)


def test_advantage_summary_verdicts(tmp_path):
    from pipeline_src.audit_tables import RowFlags, advantage_summary, summary_sentences, threat_columns, verdict

    cfg = _table_cfg()
    cols = threat_columns(cfg)
    n = 40

    def row(ln, paper_correct, strongest_correct):
        flags = {"clean": [T] * n, "transfer:fgsm_eps8": [i < paper_correct for i in range(n)],
                 "square_eps8": [i < strongest_correct for i in range(n)]}
        return RowFlags(str(ln), "0", n, flags)

    rows = [row(0, 10, 5), row(0.1, 30, 25), row(1, 30, 7), row(10, 30, 3), row(100, 5, 2)]
    summary = advantage_summary("table1", rows, cols, AuditConfig.from_params(cfg))
    assert list(summary["lambda_n"]) == ["0.1", "1", "10", "100"]
    assert list(summary["verdict"]) == ["keeps", "ahead, not significant", "loses", "no advantage"]
    first = summary.iloc[0]
    assert (first["paper_row"], first["paper_na"], first["strongest_row"], first["strongest_na"]) == (75, 25, 62.5, 12.5)
    assert first["strongest_attack"] == "square_eps8" and first["strongest_p"] < 1e-4
    text = summary_sentences(summary)
    assert text.startswith("- table1 (eps 8, 40 images") and "keeps: ln=0.1, la=0 (62.5% vs NA 12.5%" in text
    assert verdict(5.0, 2.5, 0.2) == "ahead, not significant"
    with pytest.raises(ValueError, match="exactly one NA row"):
        advantage_summary("t", rows[1:], cols, AuditConfig.from_params(cfg))


def test_make_audit_ends_with_each_tables_verdict_and_names_the_tables_not_audited(tmp_path):
    """`python -m pipeline_src summary --audit`, the last command of `make audit`, on a run with one table audited."""
    import shutil
    import subprocess
    import sys

    from workflow_helpers import REPO

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "results" / "tables").mkdir(parents=True)
    pd.DataFrame([{"table": "table1_skin4_resnet18", "lambda_n": 1, "lambda_a": 10, "eps": "8", "n_images": 32,
                   "strongest_row": 40.625, "strongest_na": 12.5, "strongest_p": 0.004, "verdict": "keeps"},
                  {"table": "table1_skin4_resnet18", "lambda_n": 0, "lambda_a": 10, "eps": "8", "n_images": 32,
                   "strongest_row": 9.375, "strongest_na": 12.5, "strongest_p": 1.0, "verdict": "loses"}]
                 ).to_csv(tmp_path / "results" / "tables" / "audit_table1_skin4_resnet18_summary.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "pipeline_src", "summary", "--audit", "--root", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("Is the defence real?")
    assert lines[1].startswith("- table1_skin4_resnet18 (eps 8, 32 images")
    assert "keeps: ln=1, la=10 (40.6% vs NA 12.5%, p=0.004)" in lines[1] and "loses: ln=0, la=10" in lines[1]
    assert lines[-1] == ("not audited yet: audit_table2_chest3_resnet18_summary.csv, "
                         "audit_table3_skin4_vgg16_summary.csv (`make audit`, or `snakemake --cores all audit`)")


# --------------------------------------------------------------------------- the jobs end to end (tiny models)


def _checkpoint(path, arch, classes, lambda_n=0.0, seed=0, stage=None):
    from pipeline_src.io import save_torch
    from pipeline_src.models import ModelSpec, build_model

    torch.manual_seed(seed)
    spec = ModelSpec(arch, len(classes), 3, 32, stage or {"resnet18": "layer1", "vgg16": "block2",
                                                          "mobilenetv2": "stride4"}[arch], vgg_width=0.125)
    model = build_model(spec).eval()
    save_torch({"model": model.state_dict(), "spec": spec.to_dict(), "classes": classes,
                "config": {"arch": arch, "lambda_n": lambda_n, "lambda_a": 0.0, "seed": seed}}, path)
    return str(path)


def test_audit_jobs_end_to_end(tmp_path):
    pytest.importorskip("pyautoattack")
    from pipeline_src.audit import PARTS, audit_model, craft_transfer_set
    from pipeline_src.audit_tables import write_audit_table
    from pipeline_src.io import load_torch, save_torch, write_json
    from pipeline_src.whitebox import subset_indices

    classes = ["a", "b", "c"]
    g = torch.Generator().manual_seed(0)
    test = tmp_path / "test.pt"
    save_torch({"images": torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8),
                "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), "classes": classes}, test)
    surrogate = _checkpoint(tmp_path / "sur.pt", "resnet18", classes, seed=1)
    members = [surrogate, _checkpoint(tmp_path / "vgg.pt", "vgg16", classes, seed=2),
               _checkpoint(tmp_path / "mnv2.pt", "mobilenetv2", classes, seed=3)]
    cfg = _table_cfg()
    # AutoAttack is left out here (its own tests run it; on a random ResNet18 it takes minutes on a CPU)
    cfg["audit"] |= {"max_images": 6, "square": {"eps": 8, "queries": 10, "p_init": 0.8},
                     "unbounded": {"eps": 255, "steps": 3}, "autoattack": {"version": "standard", "eps": []}}
    cfg["audit"]["transfer"]["di_fgsm_eps8"] = {"method": "di_fgsm", "eps": 8, "steps": 10, "p": 0.5,
                                                "resize_rate": 1.1, "surrogate": "surrogate", "decay": 0.0}
    au = AuditConfig.from_params(cfg)
    sets = {}
    for attack in au.transfer:
        sets[attack.name] = tmp_path / f"{attack.name}.pt"
        metrics = craft_transfer_set(au, attack.name, [surrogate] if attack.surrogate == "surrogate" else members,
                                     test, sets[attack.name])
        assert metrics["max_linf_255"] <= 8 and metrics["n"] == 6
    stored = load_torch(sets["ens_mi_fgsm_eps8"])
    assert torch.equal(stored["test_indices"], subset_indices(10, 6, cfg["seed"])) and stored["images"].dtype == torch.uint8
    with pytest.raises(ValueError, match="give one checkpoint"):
        craft_transfer_set(au, "mi_fgsm_eps8", members, test, tmp_path / "x.pt")

    rows = []
    for ln, seed in ((0.0, 5), (1.0, 6)):
        model = _checkpoint(tmp_path / f"m{ln}.pt", "resnet18", classes, lambda_n=ln, seed=seed)
        # two jobs per model (parts), merged by the table builder
        a1 = audit_model(au, model, test, sets, parts=("transfer", "unbounded"))
        a2 = audit_model(au, model, test, parts=("square", "autoattack"))
        assert set(a1["correct_flags"]) == {"clean", *sets, "pgd_unbounded"}
        assert set(a2["correct_flags"]) == {"clean", "square_eps8"}
        paths = [tmp_path / f"a1_{ln}.json", tmp_path / f"a2_{ln}.json"]
        write_json(paths[0], a1)
        write_json(paths[1], a2)
        # stand-ins for the evaluation and white-box records (their own stages are tested elsewhere)
        n_test = 10
        ev = _record(tmp_path / f"ev{ln}.json", {"clean": [T] * n_test, "fgsm_eps4": [T] * n_test,
                                                  "fgsm_eps8": [F_] * n_test, "cw": [F_] * n_test}, lambda_n=ln)
        wb = _record(tmp_path / f"wb{ln}.json", {k: [F_] * n_test for k in ("fgsm_eps8", "pgd20_eps4", "pgd20_eps8")},
                     lambda_n=ln)
        rows.append({"audit": paths, "evaluation": ev, "whitebox": wb})
    with pytest.raises(ValueError, match="unknown audit part"):
        audit_model(au, model, test, parts=("nope",))

    out = tmp_path / "audit_t.csv"
    table = write_audit_table("t", rows, cfg, out, tmp_path / "audit_t.png", tmp_path / "audit_t_summary.csv")
    assert list(table["lambda_n"]) == ["0", "1"] and (table["n_images"] == 6).all()
    for col in ("transfer_eps8", "strong_transfer_eps8", "ensemble_transfer_eps8", "whitebox_eps8", "square_eps8",
                "strongest_eps8", "strongest_eps8_ci_high", "check_gradient_masking_detail"):
        assert col in table.columns, col
    assert "autoattack_eps8" not in table.columns
    assert (table["strongest_eps8"] <= table[["transfer_eps8", "square_eps8", "ensemble_transfer_eps8"]].min(axis=1)).all()
    first = out.read_bytes()
    write_audit_table("t", rows, cfg, out, tmp_path / "audit_t2.png")
    assert out.read_bytes() == first  # deterministic
    assert (tmp_path / "audit_t.png").read_bytes() == (tmp_path / "audit_t2.png").read_bytes()
    assert (tmp_path / "audit_t_summary.csv").read_text().splitlines()[0].startswith("table,lambda_n,lambda_a,eps")
    assert set(PARTS) == {"transfer", "square", "autoattack", "unbounded"}


# --------------------------------------------------------------------------- the audit through the workflow

@pytest.mark.heavy
@pytest.mark.slow
def test_make_audit_on_the_smoke_config_writes_the_audit_table_with_its_checks(smoke_run, tmp_path):
    """`snakemake audit` after the smoke run (a copy of it: its outputs stay as they were for the other tests):
    the ensemble members, the strong transfer sets, every audit part of every audited model, and the table with
    its threat models, Wilson intervals, sanity columns and verdicts; each job tracked."""
    import shutil

    from workflow_helpers import planned_total, snakemake_in, tracked_runs

    root = tmp_path / "copy"
    shutil.copytree(smoke_run, root, symlinks=True)
    params = load_params(root / "params.yaml")
    dry = snakemake_in(root, "-n", "audit")
    result = snakemake_in(root, "audit")
    assert result.returncode == 0, result.stderr[-4000:]
    plan = build_plan(validate_params(params))
    # members (2 per audited dataset), the transfer sets, 4 parts per model, the table: nothing else re-ran
    expected = 2 + len(plan.audit_transfer) + 4 * len(plan.audit_models()) + len(plan.audit_tables) + 1
    assert planned_total(dry) == expected
    for table in plan.audit_tables:
        df = pd.read_csv(root / "results" / "tables" / f"audit_{table}.csv", keep_default_na=False)
        assert len(df) == len(plan.tables[table])
        assert {"clean", "clean_ci_low", "clean_ci_high", "pgd_unbounded"} <= set(df.columns)
        for threat in ("transfer", "strong_transfer", "ensemble_transfer", "whitebox", "square", "autoattack"):
            assert any(c.startswith(f"{threat}_eps") for c in df.columns), threat
        checks = [c for c in df.columns if c.startswith("check_") and not c.endswith("_detail")]
        assert checks and all(set(df[c]) <= {"pass", "fail", "note", "n/a"} for c in checks), df[checks]
        summary = pd.read_csv(root / "results" / "tables" / f"audit_{table}_summary.csv", keep_default_na=False)
        assert len(summary) == len(plan.tables[table]) - 1  # every defended row against NA
        assert set(summary["verdict"]) <= {"keeps", "ahead, not significant", "loses", "no advantage"}
        assert (root / "results" / "figures" / f"audit_{table}.png").stat().st_size > 5000
    # what `make audit` does next: the report with the audit's tables and figures
    report = snakemake_in(root, "--report", "report.html", "all", "audit")
    assert report.returncode == 0, report.stderr[-4000:]
    html = (root / "report.html").read_text(errors="replace")
    assert all(f"audit_{t}.csv" in html and f"audit_{t}.png" in html for t in plan.audit_tables)
    found = tracked_runs(root)
    assert len(found["audit_model"]) == 4 * len(plan.audit_models())
    assert len(found["audit_craft"]) == len(plan.audit_transfer) and len(found["audit_table"]) == len(plan.audit_tables)
