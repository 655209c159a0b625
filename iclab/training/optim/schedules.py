"""Learning-rate schedules: the factor multiplying training.lr at a step, a pure function of the step.

With W = warmup_steps, T = steps, m = min_lr_ratio; every schedule but `constant` warms up linearly,
(s + 1) / W for s < W, then:

- constant:            1 (no warmup; schedule-free optimizers warm up inside themselves)
- warmup_cosine:       m + (1 - m) (1 + cos(pi p)) / 2,  p = (s - W) / (T - W)
- warmup_stable_decay: 1 until the last D = decay_fraction * T steps, then linear to m at step T
- linear_decay:        1 - (1 - m) p, linear from 1 after warmup to m at step T
- inverse_sqrt:        max(m, sqrt(max(W, 1) / (s + 1)))  (1 at the end of warmup; Vaswani et al.)
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "warmup_cosine", "warmup_stable_decay", "linear_decay", "inverse_sqrt")


def lr_factor(cfg, step: int) -> float:
    """Multiplier of the base learning rate at `step` (cfg: TrainingConfig)."""
    if cfg.schedule == "constant":
        return 1.0
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    m = cfg.min_lr_ratio
    if cfg.schedule == "warmup_stable_decay":
        decay = max(1, round(cfg.decay_fraction * cfg.steps))
        p = min(1.0, max(0.0, (step - (cfg.steps - decay)) / decay))
        return 1.0 - (1 - m) * p
    if cfg.schedule == "inverse_sqrt":
        return max(m, math.sqrt(max(cfg.warmup_steps, 1) / (step + 1)))
    span = max(1, cfg.steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear_decay":
        return 1.0 - (1 - m) * p
    return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p))


BASE_LR = "iclab_base_lr"  # not "base_lr": heavyball keeps its own key of that name in the groups


def set_lr(opt, factor: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g[BASE_LR if BASE_LR in g else "base_lr"] * factor  # "base_lr": checkpoints written before
