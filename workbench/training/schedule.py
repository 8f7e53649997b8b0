"""The learning-rate schedule of the recipe: linear warm-up over iterations, then step decay at epochs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, steps_per_epoch: int, warmup_iters: int, warmup_ratio: float,
              milestones: Sequence[int], gamma: float) -> float:
    """Multiplier of the base learning rate before optimiser step `step` (0-based, counted over the whole run).

    Step decay: gamma ** (number of milestones reached), a milestone being the 0-based epoch where it starts
    (170 -> the 171st epoch). Warm-up as mmcv's "linear": during the first `warmup_iters` steps the decayed
    rate is scaled from `warmup_ratio` at step 0 up towards 1.
    """
    epoch = step // steps_per_epoch
    factor = gamma ** sum(epoch >= milestone for milestone in milestones)
    if step < warmup_iters:
        factor *= 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, train: dict, steps_per_epoch: int) -> LambdaLR:
    """A LambdaLR stepped once per optimiser step with `lr_factor` over the `train` settings.

    The factor is a plain function, so the scheduler's state dict holds only its step count: a resumed run
    follows the schedule of its current settings (e.g. more epochs) from the step where it stopped.
    """
    def factor(step: int) -> float:
        return lr_factor(step, steps_per_epoch, train["warmup_iters"], train["warmup_ratio"], train["milestones"],
                         train["gamma"])

    return LambdaLR(optimizer, factor)
