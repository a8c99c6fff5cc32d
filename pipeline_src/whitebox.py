"""`whitebox` stage (beyond the paper): attacks crafted on the evaluated model itself.

The paper's attacks are black-box: crafted on an undefended surrogate and transferred. Here every
evaluated model is attacked through its own logits (``DenoisingClassifier.forward``) with FGSM,
I-FGSM and PGD with a random start, which bounds what the denoising losses buy against an attacker
who knows the model. Adversarial images are quantised to uint8 exactly like the transfer sets
(``attacks.to_uint8``, as in ``adversarial.craft``) and scored by ``evaluate.score``, so a
white-box column and the transfer column of the same name are comparable.

The record has the format of ``evaluate.evaluate_model`` (accuracy and correct counts per column)
plus ``attacks`` (the effective settings and float/uint8 success rates) and ``test_indices`` (the
images attacked, all unless ``max_images`` caps them).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline_src.attacks import run_attack, to_uint8
from pipeline_src.checkpoints import load_checkpoint
from pipeline_src.config import WhiteboxConfig
from pipeline_src.data.split import load_split
from pipeline_src.device import compute_device, inference_model
from pipeline_src.evaluate import score

log = logging.getLogger(__name__)


def subset_indices(n: int, max_images: int, seed: int) -> torch.Tensor:
    """Sorted indices of the images to attack: all of them, or ``max_images`` drawn without
    replacement with ``seed`` (not the first ones: a folder source may store its test set
    sorted by class). Depends only on (n, max_images, seed): every model of a dataset gets the
    same images."""
    if max_images <= 0 or max_images >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:max_images].sort().values


def whitebox_model(cfg: WhiteboxConfig, model_path: str | Path, test_path: str | Path) -> dict:
    """{'arch', 'lambda_n', 'lambda_a', 'seed', 'n_test', 'accuracy': {'clean': .., <attack>: ..},
    'correct': {..}, 'correct_flags': {..}, 'attacks': {<attack>: settings and success rates}, 'test_indices': [..]}."""
    torch.set_num_threads(cfg.threads)
    ckpt = load_checkpoint(model_path)
    # eval mode: batch norm uses its running statistics, as at test time; on a GPU bf16 inside, fp32 logits
    # (run_attack moves each batch to the model's device), on the CPU the model itself
    model = inference_model(ckpt.model, compute_device())
    for p in model.parameters():  # gradients w.r.t. the input only
        p.requires_grad_(False)
    test = load_split(test_path)
    idx = subset_indices(len(test.labels), cfg.max_images, cfg.seed)
    images, labels = test.images[idx], test.labels[idx]
    x = images.float().div(255.0)

    sets = {"clean": images}
    stats: dict[str, dict] = {}
    for attack in cfg.parsed():
        kwargs: dict = {"eps": attack.eps / 255.0}
        if attack.method != "fgsm":
            kwargs |= {"steps": attack.steps, "stepsize": attack.stepsize / 255.0}
        if attack.method == "pgd":
            kwargs |= {"random_init": attack.random_start, "seed": cfg.seed}
        x_adv, info = run_attack(model, x, labels, attack.method, batch_size=cfg.batch_size, progress=True, **kwargs)
        sets[attack.name] = to_uint8(x_adv)  # what is scored: the quantised images, as for transfer sets
        stats[attack.name] = info
    result = score(model, ckpt.config, sets, labels, cfg.batch_size, what="white-box accuracy")
    result["attacks"] = stats
    result["test_indices"] = idx.tolist()
    return result
