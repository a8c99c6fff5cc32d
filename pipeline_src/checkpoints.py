"""Saving and loading models: the spec and resolved config travel inside every file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline_src.io import load_torch
from pipeline_src.models import DenoisingClassifier, ModelSpec, model_from_state


@dataclass(frozen=True)
class Checkpoint:
    model: DenoisingClassifier  # in eval mode
    config: dict  # the TrainConfig it was trained with
    classes: list[str]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """A trained model rebuilt from the spec stored with its weights."""
    blob = load_torch(path)
    spec = ModelSpec(**{**blob["spec"], "pretrained": False})  # weights come from the file, never a download
    model = model_from_state(spec, blob["model"])  # no initialisation: every weight comes from the file
    return Checkpoint(model=model.to(device).eval(), config=blob["config"], classes=list(blob["classes"]))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DenoisingClassifier:
    return load_checkpoint(path, device).model
