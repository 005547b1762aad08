"""The training recipe's arithmetic: micro-batches per rank, the learning rate, the data order.

Pure functions of the settings and the step: a resumed run recomputes the same learning rate and
the same global batch at any step, on any world size (train.py).
"""
from __future__ import annotations

import math
import random


def grad_accum(global_batch: int, micro_batch: int, world: int) -> int:
    """Micro-batches per rank per step; fails naming the numbers unless they divide."""
    accum, rem = divmod(global_batch, micro_batch * world) if micro_batch * world else (0, 1)
    if rem or accum == 0 or micro_batch != 1:
        raise SystemExit(
            f"global_batch={global_batch} must equal micro_batch ({micro_batch}, must be 1) x "
            f"grad_accum x world_size ({world}): {global_batch} is not a positive multiple of "
            f"{micro_batch * world}; choose a global_batch divisible by gpus x nodes = {world}")
    return accum


def warmup(warmup_steps: int, warmup_ratio: float, max_steps: int) -> int:
    """train.warmup_steps, or when it is 0 train.warmup_ratio of max_steps, rounded."""
    return warmup_steps or round(warmup_ratio * max_steps)


def lr_at(step: int, lr: float, warm: int, max_steps: int) -> float:
    """Linear warmup over `warm` steps, then cosine decay to zero at max_steps."""
    if step < warm:
        return lr * (step + 1) / warm
    progress = (step - warm) / max(1, max_steps - warm)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> list[int]:
    """Example indices of the global batch at `step`: epochs of seeded shuffles, concatenated."""
    start = step * global_batch
    out = []
    while len(out) < global_batch:
        epoch, offset = divmod(start + len(out), n)
        perm = list(range(n))
        random.Random(seed * 100003 + epoch).shuffle(perm)
        out.extend(perm[offset: offset + global_batch - len(out)])
    return out
