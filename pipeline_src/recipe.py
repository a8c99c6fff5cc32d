"""The training recipe around the losses: learning-rate schedule and random flips.

The paper gives only "SGD, initial learning rate 0.01, 80 epochs"; its text is silent on the schedule
and on augmentation. Each choice is a parameter (``training.lr_schedule``, ``training.flips``) whose
default is the project's behaviour before issue 18 (a step schedule, no flips), so that those models
stay byte-identical.
"""
from __future__ import annotations

import torch

SCHEDULES = ("step", "onecycle", "cosine")
FLIPS = ("none", "horizontal", "both")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str | None, epochs: int, steps_per_epoch: int,
                    milestones: tuple[int, ...] = (), gamma: float = 0.1
                    ) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """(scheduler, per_step): step it after every batch when ``per_step``, else after every epoch.

    step (None): lr *= gamma at each milestone epoch. onecycle: Smith's one-cycle policy over the whole run,
    peaking at the optimizer's lr (warm-up 30% of the steps, then cosine down to lr / 25e4); momentum is left
    as configured. cosine: cosine decay from lr to 0 over the whole run.
    """
    schedule = schedule or "step"
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma), False
    total = max(1, epochs * steps_per_epoch)
    if schedule == "onecycle":
        peak = optimizer.param_groups[0]["lr"]
        # total + 1: the scheduler is stepped after every batch, the last time after the last batch, and
        # OneCycleLR extrapolates (its lr rises again) past its final step
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total + 1,
                                                   cycle_momentum=False), True
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    raise ValueError(f"training.lr_schedule = {schedule!r} is not known; allowed: {', '.join(SCHEDULES)}")


def random_flips(x: torch.Tensor, flips: str | None, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of the batch left-right (and, for ``both``, up-down) with probability 1/2.

    The coin flips come from ``generator`` on the CPU (the shuffling generator), so a run is reproducible on
    any device; with ``flips`` None or ``none`` nothing is drawn and the random stream is unchanged.
    """
    if flips in (None, "none"):
        return x
    if flips not in FLIPS:
        raise ValueError(f"training.flips = {flips!r} is not known; allowed: {', '.join(FLIPS)}")
    n = x.shape[0]
    dims = (-1,) if flips == "horizontal" else (-1, -2)
    for dim in dims:
        coin = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, *([1] * (x.dim() - 1)))
        x = torch.where(coin, x.flip(dim), x)
    return x
