"""train_step wires the paper's losses as section 2 says (issue 18, item 5); each check fails on a broken wiring.

Most checks drive ``train_step`` with a transparent stand-in model (``ToyModel``): it records the batch it was
given and computes logits, f(x) and the reconstruction by formulas the test can repeat, so every loss is
recomputed here independently, pixel by pixel, from what the model actually saw:

- L_c is the cross-entropy over the (K+1)N logits, with labels in clean-then-noisy, copy-major order;
- L_n pairs copy k of image i with image i: zero when f ignores the noise, changed when the noisy batch is
  permuted;
- L_a's target is the clean image for both reconstructions: a decoder returning its (noisy) input gives
  L_a = ||x - x'|| > 0, a decoder returning the clean image gives 0;
- the noise has U[-sigma, sigma]'s mean and variance (mid-grey input: no clipping) and is redrawn every step;
- no gradient reaches the real decoder at lambda_a = 0 (and some does at lambda_a = 10);
- a tiny real model trained with the three losses separates a toy set.

``MUTANTS`` are copies of train_step with one deliberate bug each (labels not repeated for the noisy copies,
labels interleaved instead of copy-major, L_a against the noisy image, noisy features paired with the wrong
clean image, L_n on the logits, the noise fixed across steps, Gaussian noise, lambda_a dropped):
``test_every_mutant_is_caught`` runs every check on each and requires at least one to fail, and
``test_reference_copy_matches_train_step`` keeps the unmutated copy equal to the real train_step, so the
mutants stay one bug away from the real code.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pipeline_src.train as train_mod
from pipeline_src.config import TrainConfig, load_params, validate_params
from pipeline_src.data.prepare import Split
from pipeline_src.losses import classification_loss, neighbor_loss, reconstruction_loss, total_loss, uniform_noise
from pipeline_src.models import ModelSpec, build_model
from pipeline_src.models.denoising import Outputs

N, K, C, S, SIGMA = 4, 2, 1, 8, 0.2
Step = Callable[..., dict]


# --------------------------------------------------------------------------- a transparent model

class ToyModel(nn.Module):
    """logits = head(f(x)); f(x) = 2x2 average pool (or a 0/1 threshold, which ignores noise below 0.5 - |x|);
    the "decoder" returns its input (``decoder='input'``) or the clean batch it was told (``'clean'``)."""

    def __init__(self, feature: str = "pool", decoder: str = "input", classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(C * 4, classes)
        self.gain = nn.Parameter(torch.ones(()))  # the decoder's one weight
        self.feature, self.decoder, self.clean = feature, decoder, None
        self.seen: list[torch.Tensor] = []

    def f(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature == "threshold":
            return (x > 0.5).float().mul(self.gain)
        return F.adaptive_avg_pool2d(x, 2)

    def outputs(self, x: torch.Tensor, reconstruct: bool = True) -> Outputs:
        self.seen.append(x.detach().clone())
        feats = self.f(x)
        recon = None
        if reconstruct:
            recon = x * self.gain if self.decoder == "input" else self.clean.repeat(len(x) // len(self.clean), 1, 1, 1)
        return Outputs(self.head(F.adaptive_avg_pool2d(x, 2).flatten(1)), feats, recon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x, reconstruct=False).logits


@pytest.fixture(scope="module")
def cfg(repo) -> TrainConfig:
    params = validate_params(load_params(repo / "params.yaml"))
    base = TrainConfig.from_params(params, "resnet18", 1.0, 10.0, 0)
    return dataclasses.replace(base, noisy_copies=K, noise_sigma=SIGMA, neighbor_distance="l2",
                               reconstruction_distance="l2", reconstruct="both", decoder_activation="sigmoid")


def batch(seed: int = 0, grey: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.full((N, C, S, S), 0.5) if grey else torch.rand(N, C, S, S, generator=g) * 0.6 + 0.2
    return x, torch.tensor([0, 1, 2, 1])


def per_sample_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([(ai - bi).pow(2).sum().sqrt() for ai, bi in zip(a, b)])


# --------------------------------------------------------------------------- the checks (each raises AssertionError)

def check_lc_over_clean_and_noisy_logits(step: Step, cfg: TrainConfig) -> None:
    model, (x, y) = ToyModel(), batch()
    losses = step(model, x, y, cfg, torch.Generator().manual_seed(1))
    seen = model.seen[-1]
    assert seen.shape[0] == (K + 1) * N, "one forward pass over the clean batch and K noisy copies"
    assert torch.equal(seen[:N], x), "the clean images come first"
    labels = torch.cat([y] * (K + 1))  # clean, then copy 1 of every image, then copy 2 (copy-major)
    expected = F.cross_entropy(model.head(F.adaptive_avg_pool2d(seen, 2).flatten(1)), labels)
    assert losses["loss_c"].item() == pytest.approx(expected.item(), rel=1e-6), "L_c over (K+1)N labelled logits"
    for k in range(1, K + 1):  # copy k of image i is image i plus bounded noise (so the labels above are its own)
        assert (seen[k * N:(k + 1) * N] - x).abs().max() <= SIGMA + 1e-6


def check_ln_pairs_each_noisy_copy_with_its_clean_image(step: Step, cfg: TrainConfig) -> None:
    model, (x, y) = ToyModel(), batch()
    losses = step(model, x, y, cfg, torch.Generator().manual_seed(2))
    seen = model.seen[-1]
    f_clean = F.adaptive_avg_pool2d(x, 2)
    pairs = [per_sample_l2(f_clean, F.adaptive_avg_pool2d(seen[k * N:(k + 1) * N], 2)) for k in range(1, K + 1)]
    expected = torch.cat(pairs).mean()
    assert losses["loss_n"].item() == pytest.approx(expected.item(), rel=1e-5), "L_n = mean ||f(x_i) - f(x'_i)||"
    perm = torch.tensor([1, 2, 3, 0])
    shuffled = torch.cat([per_sample_l2(f_clean, F.adaptive_avg_pool2d(seen[k * N:(k + 1) * N][perm], 2))
                          for k in range(1, K + 1)]).mean()
    assert abs(shuffled.item() - expected.item()) > 1e-3, "a permuted noisy batch must change L_n"


def check_ln_zero_when_features_ignore_noise(step: Step, cfg: TrainConfig) -> None:
    model = ToyModel(feature="threshold")
    g = torch.Generator().manual_seed(3)
    x = torch.where(torch.rand(N, C, S, S, generator=g) < 0.5, 0.1, 0.9)  # |x - 0.5| > sigma: f(x') = f(x)
    losses = step(model, x, batch()[1], cfg, torch.Generator().manual_seed(3))
    assert losses["loss_n"].item() == 0.0, "identical features must give L_n = 0"


def check_la_target_is_the_clean_image(step: Step, cfg: TrainConfig) -> None:
    x, y = batch()
    echo = ToyModel(decoder="input")  # reconstructs the noisy copy as itself: L_a = ||x - x'|| for that term
    losses = step(echo, x, y, cfg, torch.Generator().manual_seed(4))
    noisy = echo.seen[-1][N:]
    noisy_term = torch.stack([per_sample_l2(x, noisy[k * N:(k + 1) * N]) for k in range(K)]).mean(0)
    expected = (per_sample_l2(x, x) + noisy_term).mean()
    assert losses["loss_a"].item() > 0.1, "a decoder returning the noisy input must not satisfy L_a"
    assert losses["loss_a"].item() == pytest.approx(expected.item(), rel=1e-5)
    oracle = ToyModel(decoder="clean")  # returns the clean image for clean and noisy inputs alike
    oracle.clean = x
    assert step(oracle, x, y, cfg, torch.Generator().manual_seed(4))["loss_a"].item() == pytest.approx(0, abs=1e-6)


def check_noise_is_uniform_and_redrawn(step: Step, cfg: TrainConfig) -> None:
    model, (x, y) = ToyModel(), batch(grey=True)
    big = dataclasses.replace(cfg, noisy_copies=64)  # 64 x 4 x 64 pixels: moments to about 1%
    gen = torch.Generator().manual_seed(5)
    step(model, x, y, big, gen)
    step(model, x, y, big, gen)
    first, second = (seen[N:] - 0.5 for seen in model.seen[-2:])  # mid-grey: 0.5 +- 0.2 is never clipped
    for noise in (first, second):
        assert noise.abs().max() <= SIGMA + 1e-6 and noise.abs().max() > 0.95 * SIGMA
        assert noise.mean().item() == pytest.approx(0.0, abs=0.01)  # U[-s, s]: mean 0
        assert noise.var().item() == pytest.approx(SIGMA ** 2 / 3, rel=0.05)  # variance s^2 / 3
    assert not torch.equal(first, second), "the noise is redrawn every step"


def check_no_decoder_gradient_at_lambda_a_zero(step: Step, cfg: TrainConfig) -> None:
    spec = ModelSpec(arch="resnet18", num_classes=3, in_channels=1, image_size=32, decoder_stage="layer1")
    x, y = torch.rand(N, 1, 32, 32, generator=torch.Generator().manual_seed(6)), batch()[1]
    for lambda_a, reaches in ((0.0, False), (10.0, True)):
        torch.manual_seed(0)
        model = build_model(spec)
        step(model, x, y, dataclasses.replace(cfg, lambda_a=lambda_a), torch.Generator().manual_seed(6))["loss"].backward()
        grads = [p.grad for p in model.decoder.parameters()]
        got = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert got == reaches, f"decoder gradient at lambda_a = {lambda_a}: {got}"
        assert model.encoder[0].weight.grad.abs().sum() > 0  # the classifier itself is trained either way


CHECKS = {f.__name__: f for f in (check_lc_over_clean_and_noisy_logits,
                                  check_ln_pairs_each_noisy_copy_with_its_clean_image,
                                  check_ln_zero_when_features_ignore_noise, check_la_target_is_the_clean_image,
                                  check_noise_is_uniform_and_redrawn, check_no_decoder_gradient_at_lambda_a_zero)}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_train_step(name, cfg):
    CHECKS[name](train_mod.train_step, cfg)


# --------------------------------------------------------------------------- the mutants

def reference_step(model, x, y, cfg, generator, bug: str | None = None) -> dict:
    """A copy of ``train_step`` (defended branch) with ``bug`` switched in; bug None is the real thing."""
    if not (cfg.defended or cfg.undefended_noisy_ce):
        logits = model(x)
        l_c = classification_loss(logits, y)
        return {"loss": l_c, "loss_c": l_c, "logits": logits}
    k, n = cfg.noisy_copies, x.shape[0]
    if bug == "noise_fixed":
        generator = torch.Generator().manual_seed(0)
    if bug == "noise_gaussian":
        x_noisy = (x.repeat(k, 1, 1, 1) + cfg.noise_sigma * torch.randn(x.repeat(k, 1, 1, 1).shape,
                                                                         generator=generator)).clamp(0, 1)
    else:
        x_noisy = uniform_noise(x.repeat(k, 1, 1, 1), cfg.noise_sigma, generator)
    out = model.outputs(torch.cat([x, x_noisy]), reconstruct=cfg.lambda_a > 0 or bug == "lambda_a_dropped")
    labels = {"labels_not_repeated": None, "labels_interleaved": y.repeat_interleave(k + 1)}.get(bug, y.repeat(k + 1))
    l_c = classification_loss(out.logits[:n], y) if labels is None else classification_loss(out.logits, labels)
    f_noisy = out.features[n:].roll(1, 0) if bug == "features_misaligned" else out.features[n:]
    f_clean = out.features[:n]
    if bug == "ln_on_logits":
        f_clean, f_noisy = out.logits[:n], out.logits[n:]
    l_n = neighbor_loss(f_clean, f_noisy, cfg.neighbor_distance, cfg.neighbor_detach_clean)
    losses = {"loss_c": l_c, "loss_n": l_n, "logits": out.logits[:n]}
    l_a = torch.zeros((), device=x.device)
    if out.reconstruction is not None:
        target = x if cfg.decoder_activation == "sigmoid" else x * 2 - 1
        recon_clean = out.reconstruction[:n] if cfg.reconstruct == "both" else None
        if bug == "target_noisy":  # each reconstruction compared with its own input
            l_a = reconstruction_loss(x_noisy, None, out.reconstruction[n:], cfg.reconstruction_distance)
            if recon_clean is not None:
                l_a = l_a + reconstruction_loss(target, None, recon_clean, cfg.reconstruction_distance)
        else:
            l_a = reconstruction_loss(target, recon_clean, out.reconstruction[n:], cfg.reconstruction_distance)
        losses["loss_a"] = l_a
    lambda_a = 1.0 if bug == "lambda_a_dropped" else cfg.lambda_a
    losses["loss"] = total_loss(l_c, l_n, l_a, cfg.lambda_n, lambda_a)
    return losses


MUTANTS = ("labels_not_repeated", "labels_interleaved", "target_noisy", "features_misaligned", "ln_on_logits",
           "noise_fixed", "noise_gaussian", "lambda_a_dropped")


def test_reference_copy_matches_train_step(cfg):
    """The mutants are this copy plus one bug, so the copy must compute what train_step computes."""
    x, y = batch()
    for model_kind in ("toy", "real"):
        if model_kind == "toy":
            a, b = ToyModel(), ToyModel()
            xx = x
        else:
            spec = ModelSpec(arch="resnet18", num_classes=3, in_channels=1, image_size=32, decoder_stage="layer1")
            torch.manual_seed(0)
            a = build_model(spec)
            b = a
            xx = torch.rand(N, 1, 32, 32, generator=torch.Generator().manual_seed(7))
        real = train_mod.train_step(a, xx, y, cfg, torch.Generator().manual_seed(8))
        copy = reference_step(b, xx, y, cfg, torch.Generator().manual_seed(8))
        assert set(real) == set(copy)
        for key in real:
            assert torch.equal(real[key], copy[key]), (model_kind, key)


@pytest.mark.parametrize("bug", MUTANTS)
def test_every_mutant_is_caught(bug, cfg, monkeypatch):
    def mutant(model, x, y, c, generator):
        return reference_step(model, x, y, c, generator, bug)

    monkeypatch.setattr(train_mod, "train_step", mutant)
    caught = []
    for name, check in CHECKS.items():
        try:
            check(train_mod.train_step, cfg)
        except AssertionError:
            caught.append(name)
    assert caught, f"mutant {bug!r} passes every check"


# --------------------------------------------------------------------------- end to end

def toy_split(n: int, seed: int) -> Split:
    """Two classes told apart by a bright square: separable by any working classifier."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, 1, 32, 32), generator=g, dtype=torch.uint8)
    images[labels == 1, :, 8:24, 8:24] = 230
    return Split(images=images, labels=labels, classes=["a", "b"])


def test_tiny_defended_model_separates_a_toy_set(cfg, tmp_path):
    """With all three losses (lambda_n = 1, lambda_a = 10, the paper's) a tiny run reaches >= 90% test accuracy."""
    c = dataclasses.replace(cfg, noisy_copies=1, neighbor_distance="rms", reconstruction_distance="rms", epochs=3,
                            batch_size=8, lr=0.01, lr_milestones=())
    history = train_mod.train_model(c, toy_split(64, 0), toy_split(32, 1), tmp_path / "m.pt")
    assert history[-1]["test_accuracy"] >= 0.9, history
    assert history[-1]["loss_n"] > 0 and history[-1]["loss_a"] > 0


# --------------------------------------------------------------------------- VGG16's f(x)

@pytest.mark.parametrize("size", [32, 64])
def test_vgg16_feature_is_the_last_conv_layer_unless_asked(size):
    base = ModelSpec(arch="vgg16", num_classes=3, in_channels=3, image_size=size, decoder_stage="block2",
                     vgg_width=0.125)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = {}
    for kind in ("last_conv", "last_pool", None):
        torch.manual_seed(0)
        model = build_model(dataclasses.replace(base, vgg_feature=kind)).eval()
        out[kind] = model.outputs(x)
        assert torch.allclose(out[kind].logits, model(x)), "f(x) must not change what the classifier computes"
        if kind == "last_conv":
            conv_layers = [m for m in model.trunk if isinstance(m, nn.Conv2d)]
            assert not isinstance(model.trunk[model.feature_end - 1], nn.MaxPool2d)
            assert out[kind].features.shape[1] == conv_layers[-1].out_channels
    assert out["last_conv"].features.shape[-1] == size // 16  # before the fifth pool
    assert out["last_pool"].features.shape[-1] == size // 32
    assert torch.equal(F.max_pool2d(out["last_conv"].features, 2), out["last_pool"].features)
    assert torch.equal(out[None].features, out["last_conv"].features)  # unset = the paper's reading
    assert torch.equal(out["last_conv"].logits, out["last_pool"].logits)
