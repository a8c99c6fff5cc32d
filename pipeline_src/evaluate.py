"""`evaluate` stage: accuracy of one model on the clean test set and on every adversarial set.

Accuracy is over ALL test images (as in the paper), not only those the model got right when clean.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from pipeline_src.checkpoints import load_checkpoint
from pipeline_src.data.split import load_split
from pipeline_src.device import Bf16Inference, compute_device, inference_model, is_gpu, normalise_u8
from pipeline_src.io import load_torch

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict(model: torch.nn.Module, images_u8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted labels for uint8 images [N, C, H, W] (on the CPU; computed on the model's device)."""
    device = next(model.parameters()).device
    if is_gpu(device):  # uint8 batches go to the GPU and are normalised there; one host sync at the end
        gpu_model = model if isinstance(model, Bf16Inference) else Bf16Inference(model)
        preds = [gpu_model(normalise_u8(images_u8[i:i + batch_size].to(device, non_blocking=True))).argmax(1)
                 for i in range(0, len(images_u8), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)
    preds = [model(images_u8[i:i + batch_size].float().div_(255.0)).argmax(1)
             for i in range(0, len(images_u8), batch_size)]
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def encode_flags(correct: list[bool]) -> str:
    """Correct/incorrect per image -> hex, 4 images per digit, first image in the top bit (stats.decode_flags)."""
    bits = "".join("1" if c else "0" for c in correct)
    bits += "0" * (-len(bits) % 4)
    return "".join(f"{int(bits[i:i + 4], 2):x}" for i in range(0, len(bits), 4))


def accuracy(model: torch.nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    return float((predict(model, images_u8, batch_size) == labels).float().mean())


def evaluate_model(model_path: str | Path, test_path: str | Path, adversarial: dict[str, str | Path],
                   batch_size: int = 256, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                   threads: int | None = None) -> dict:
    """{'arch', 'lambda_n', 'lambda_a', 'seed', 'n_test', 'accuracy': {'clean': .., <attack>: ..}, 'correct': {..},
    'correct_flags': {..}}, accuracies in [0, 1]; correct_flags: which images were right, as hex (encode_flags),
    for the paired tests of ``stats.py``. ``wrap``: what is evaluated instead of the classifier (e.g. a
    denoiser in front of it). ``threads``: torch threads (jobs: ``training.threads``, what Snakemake reserves for
    them; torch's default is one per core, which oversubscribes the cores when jobs run side by side)."""
    if threads is not None:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(model_path)
    model = inference_model(wrap(ckpt.model) if wrap is not None else ckpt.model, compute_device())
    test = load_split(test_path)
    sets = {"clean": test.images}
    for name, path in adversarial.items():
        adv = load_torch(path)
        if not torch.equal(adv["labels"], test.labels):
            raise ValueError(f"adversarial set {path} does not match the test set {test_path}: "
                             "re-run the attack stage for this dataset")
        sets[name] = adv["images"]
    return score(model, ckpt.config, sets, test.labels, batch_size)


def score(model: torch.nn.Module, config: dict, sets: dict[str, torch.Tensor], labels: torch.Tensor,
          batch_size: int = 256, what: str = "accuracy") -> dict:
    """The evaluation record of ``model`` on uint8 image sets that share ``labels`` (see evaluate_model)."""
    result: dict = {**{k: config[k] for k in ("arch", "lambda_n", "lambda_a", "seed")},
                    "n_test": len(labels), "accuracy": {}, "correct": {}, "correct_flags": {}}
    for name, images in sets.items():
        right = predict(model, images, batch_size) == labels
        correct = int(right.sum())
        result["correct_flags"][name] = encode_flags(right.tolist())
        result["correct"][name] = correct
        result["accuracy"][name] = correct / len(labels)
        log.info("%-14s %s %.4f", name, what, result["accuracy"][name])
    return result
