"""Training: the three losses are used as configured; a resumed run ends with identical weights."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline_src.config import TrainConfig, load_params, validate_params
from pipeline_src.data.prepare import Split
from pipeline_src.io import load_torch
from pipeline_src.train import model_spec, train_model, train_step
from pipeline_src.models import build_model


def tiny_split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, 1, 32, 32), generator=g, dtype=torch.uint8)
    images[labels == 1, :, 8:24, 8:24] = 230  # a bright square: learnable in a few steps
    return Split(images=images, labels=labels, classes=["a", "b"])


@pytest.fixture(scope="module")
def base_cfg(repo) -> TrainConfig:
    cfg = validate_params(load_params(repo / "params.yaml"))
    return dataclasses.replace(TrainConfig.from_params(cfg, "resnet18", 1.0, 10.0, 0), epochs=2, batch_size=8)


def test_defended_step_uses_all_three_losses_and_na_step_only_clean_ce(base_cfg):
    train = tiny_split(8, 0)
    model = build_model(model_spec(base_cfg, train))
    x, y = train.float_images(), train.labels
    losses = train_step(model, x, y, base_cfg, torch.Generator().manual_seed(0))
    expected = losses["loss_c"] + 1.0 * losses["loss_n"] + 10.0 * losses["loss_a"]
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["loss_n"] > 0 and losses["loss_a"] > 0
    na = dataclasses.replace(base_cfg, lambda_n=0.0, lambda_a=0.0)
    na_losses = train_step(model, x, y, na, torch.Generator().manual_seed(0))
    assert set(na_losses) == {"loss", "loss_c", "logits"}


def test_training_learns_and_writes_model(base_cfg, tmp_path):
    cfg = dataclasses.replace(base_cfg, lambda_n=0.0, lambda_a=0.0, epochs=4, lr=0.05)
    history = train_model(cfg, tiny_split(48, 0), tiny_split(16, 1), tmp_path / "m.pt")
    assert history[-1]["loss"] < history[0]["loss"]
    blob = load_torch(tmp_path / "m.pt")
    assert blob["config"]["lambda_n"] == 0.0 and blob["spec"]["arch"] == "resnet18"
    assert not (tmp_path / "m.pt.ckpt").exists()


def test_resume_from_checkpoint_gives_identical_weights(base_cfg, tmp_path, monkeypatch):
    import pipeline_src.train as train_mod

    train, test = tiny_split(24, 0), tiny_split(8, 1)
    train_model(base_cfg, train, test, tmp_path / "full.pt")

    real_save = train_mod.save_torch

    def save_then_die(obj, path):
        real_save(obj, path)
        if str(path).endswith(".ckpt"):
            raise KeyboardInterrupt  # as if the job were killed right after the first epoch's checkpoint

    monkeypatch.setattr(train_mod, "save_torch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_model(base_cfg, train, test, tmp_path / "resumed.pt")
    assert (tmp_path / "resumed.pt.ckpt").exists() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(train_mod, "save_torch", real_save)

    train_model(base_cfg, train, test, tmp_path / "resumed.pt")
    full, resumed = load_torch(tmp_path / "full.pt"), load_torch(tmp_path / "resumed.pt")
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert full["history"] == resumed["history"]


def test_checkpoint_of_another_configuration_is_not_resumed(base_cfg, tmp_path):
    train, test = tiny_split(16, 0), tiny_split(8, 1)
    other = dataclasses.replace(base_cfg, epochs=1, lr=0.5)
    train_model(other, train, test, tmp_path / "other.pt")
    (tmp_path / "other.pt").rename(tmp_path / "m.pt.ckpt")  # a stale file where the checkpoint would be
    history = train_model(dataclasses.replace(base_cfg, epochs=1), train, test, tmp_path / "m.pt")
    assert len(history) == 1 and (tmp_path / "m.pt").exists()


def test_checkpoint_interval_changes_which_checkpoints_are_written_not_the_model(base_cfg, tmp_path, monkeypatch):
    import pipeline_src.train as train_mod

    cfg = dataclasses.replace(base_cfg, epochs=3)
    train, test = tiny_split(24, 0), tiny_split(8, 1)
    real_save, saved = train_mod.save_torch, []

    def counting_save(obj, path):
        saved.append(str(path))
        real_save(obj, path)

    monkeypatch.setattr(train_mod, "save_torch", counting_save)
    train_model(cfg, train, test, tmp_path / "every.pt")  # default 0 s: after every epoch but the last
    assert saved == [str(tmp_path / "every.pt.ckpt")] * 2 + [str(tmp_path / "every.pt")]
    saved.clear()
    train_model(cfg, train, test, tmp_path / "rare.pt", checkpoint_every_s=3600)
    assert saved == [str(tmp_path / "rare.pt")]
    assert (tmp_path / "every.pt").read_bytes() == (tmp_path / "rare.pt").read_bytes()
