"""Saving and loading models: the spec and resolved config travel inside every file."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline_src.io import load_torch
from pipeline_src.models import DenoisingClassifier, ModelSpec, build_model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DenoisingClassifier:
    """A trained model in eval mode, rebuilt from the spec stored with its weights."""
    blob = load_torch(path)
    spec = ModelSpec(**{**blob["spec"], "pretrained": False})  # weights come from the file, never a download
    model = build_model(spec)
    model.load_state_dict(blob["model"])
    return model.to(device).eval()
