"""Training recipe options (issue 18): schedules, flips, and defaults that leave older models unchanged."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline_src.config import ParamsError, TrainConfig, config_dict, config_hash, load_params, validate_params
from pipeline_src.data.prepare import Split
from pipeline_src.recipe import build_scheduler, random_flips


def lrs(schedule, epochs=4, steps=5, milestones=(2,)):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched, per_step = build_scheduler(opt, schedule, epochs, steps, milestones, 0.1)
    seen = []
    for _ in range(epochs):
        for _ in range(steps):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return seen, opt.param_groups[0]["momentum"]


def test_step_schedule_is_the_milestone_schedule():
    seen, _ = lrs(None)
    assert seen == pytest.approx([0.1] * 10 + [0.01] * 10)
    assert lrs("step")[0] == seen


def test_onecycle_peaks_at_lr_and_keeps_momentum():
    seen, momentum = lrs("onecycle")
    assert max(seen) == pytest.approx(0.1, rel=0.01) and seen[0] < 0.01 and seen[-1] < 0.002
    assert seen.index(max(seen)) == pytest.approx(0.3 * len(seen), abs=1)
    assert momentum == 0.9  # cycle_momentum off: training.momentum stays what it says


def test_cosine_decays_from_lr_to_zero():
    seen, _ = lrs("cosine")
    assert seen[0] == pytest.approx(0.1) and seen[-1] < 0.002
    assert all(a >= b for a, b in zip(seen, seen[1:]))


def test_unknown_schedule_is_rejected():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        build_scheduler(opt, "linear", 1, 1)


def test_flips_none_draws_nothing_and_flips_flip():
    x = torch.arange(2 * 16 * 3 * 4 * 4, dtype=torch.float32).view(32, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert random_flips(x, None, g) is x and random_flips(x, "none", g) is x
    assert torch.equal(g.get_state(), state)  # the noise that follows is the same as without the option
    h = random_flips(x, "horizontal", g)
    flipped = [torch.equal(h[i], x[i].flip(-1)) for i in range(32)]
    assert all(f or torch.equal(h[i], x[i]) for i, f in enumerate(flipped)) and 4 < sum(flipped) < 28
    b = random_flips(x, "both", torch.Generator().manual_seed(1))
    kinds = {next(k for k, t in (("id", x[i]), ("h", x[i].flip(-1)), ("v", x[i].flip(-2)), ("hv", x[i].flip(-1, -2)))
                  if torch.equal(b[i], t)) for i in range(32)}
    assert kinds == {"id", "h", "v", "hv"}


def test_defaults_keep_the_saved_config_and_hash(repo):
    """training.lr_schedule: step, training.flips: none and (for ResNet18) model.vgg_feature map to None, which
    config_dict leaves out: a model trained with the defaults carries the same config (and hash) as before."""
    params = validate_params(load_params(repo / "params.yaml"))
    assert params["training"]["lr_schedule"] == "step" and params["training"]["flips"] == "none"
    assert params["model"]["vgg_feature"] == "last_conv"
    cfg = TrainConfig.from_params(params, "resnet18", 1, 10, 0)
    assert (cfg.lr_schedule, cfg.flips, cfg.vgg_feature) == (None, None, None)
    saved = config_dict(cfg)
    assert not {"lr_schedule", "flips", "vgg_feature"} & set(saved) and "compile" in saved
    assert TrainConfig.from_params(params, "vgg16", 1, 10, 0).vgg_feature == "last_conv"
    params["training"].update(lr_schedule="onecycle", flips="both")
    params["model"]["vgg_feature"] = "last_pool"
    changed = TrainConfig.from_params(validate_params(params), "vgg16", 1, 10, 0)
    assert config_dict(changed)["lr_schedule"] == "onecycle" and config_dict(changed)["vgg_feature"] == "last_pool"
    assert config_hash(changed) != config_hash(dataclasses.replace(changed, flips=None))


def test_unknown_recipe_value_names_the_key(repo):
    params = load_params(repo / "params.yaml")
    params["training"]["lr_schedule"] = "linear"
    with pytest.raises(ParamsError, match="training.lr_schedule"):
        validate_params(params)


def test_onecycle_with_flips_trains_and_differs_from_default(repo, tmp_path):
    from pipeline_src.train import train_model

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(16) % 2
    images = torch.randint(0, 255, (16, 1, 32, 32), generator=g, dtype=torch.uint8)
    split = Split(images=images, labels=labels, classes=["a", "b"])
    params = validate_params(load_params(repo / "params.yaml"))
    base = dataclasses.replace(TrainConfig.from_params(params, "resnet18", 1, 10, 0), epochs=2, batch_size=8)
    h0 = train_model(base, split, split, tmp_path / "a.pt")
    h1 = train_model(dataclasses.replace(base, lr_schedule="onecycle", flips="both"), split, split, tmp_path / "b.pt")
    assert [r["lr"] for r in h0] == [0.01, 0.01]
    assert h1[-1]["lr"] < 1e-4  # the one-cycle schedule ran to its end, stepped every batch
    assert h0[-1]["loss"] != h1[-1]["loss"]


def test_dataset_flips_override_training_flips(repo):
    params = load_params(repo / "params.yaml")
    params["training"]["flips"] = "both"
    params["datasets"]["chest3"]["flips"] = "horizontal"
    params = validate_params(params)
    assert TrainConfig.from_params(params, "resnet18", 1, 10, 0, dataset="chest3").flips == "horizontal"
    assert TrainConfig.from_params(params, "resnet18", 1, 10, 0, dataset="skin4").flips == "both"
    assert TrainConfig.from_params(params, "resnet18", 1, 10, 0).flips == "both"  # no dataset named: training's
