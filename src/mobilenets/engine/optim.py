"""The optimizer and the per-step learning-rate schedule every task trains with."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def make_optimizer(model: nn.Module, config: Any) -> torch.optim.Optimizer:
    """`config.optimizer` (sgd, rmsprop, adamw) over the trainable parameters, with no weight decay on batch-norm
    parameters and biases (every parameter with fewer than 2 dimensions)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps,
                                   momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: Any, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear warm-up, then cosine to zero or a step decay (`gamma` every
    `step_epochs` epochs; with step_epochs=1 and gamma=0.98, the V2 paper's exponential decay)."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = config.epochs * steps_per_epoch
    step_size = max(1, round(config.step_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        return config.gamma ** ((step - warmup) // step_size)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
