"""Yaw augmentation for policies that see the scene as coordinates rather than pixels.

A table-top task looks the same after turning the whole world about the vertical axis: the
TCP, the objects and the labels rotate together, the physics does not change. For a policy
whose observations are all vectors (no camera: an image cannot be turned with the scene),
rotating every sample by a random yaw turns 45 demonstrated layouts into every orientation
of them, so the network learns the push *relative* to the cube and goal instead of the
absolute directions of 45 scenes.

Each state key and action layout lists the offsets of its planar (x, y) pairs; those pairs
turn, everything else (heights, the gripper) stays.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from bc_robot.core.spec import ACTION_PLANAR, NormStats, planar_offsets
from bc_robot.learning.dataset import Batch


def rotate_planar(values: torch.Tensor, offsets: Sequence[int], cos: torch.Tensor,
                  sin: torch.Tensor) -> torch.Tensor:
    """Turn the (x, y) pairs at `offsets` of the last axis; cos/sin are [B] and broadcast
    over the axes between the batch and the last."""
    if not offsets or values.shape[-1] == 0:
        return values
    shape = (values.shape[0],) + (1,) * (values.dim() - 1)
    c, s = cos.reshape(shape).to(values.dtype), sin.reshape(shape).to(values.dtype)
    out = values.clone()
    for o in offsets:
        x, y = values[..., o:o + 1], values[..., o + 1:o + 2]
        out[..., o:o + 1] = c * x - s * y
        out[..., o + 1:o + 2] = s * x + c * y
    return out


def isotropic_stats(stats: NormStats, offsets: Sequence[int]) -> NormStats:
    """The statistics a full turn gives each planar pair: mean 0 and, on both axes, the
    pair's root mean square, so the turned values are normalized as the network will see
    them (a table a metre in front of the robot turned half round is a metre behind it)."""
    mean, std, low, high = (list(v) for v in (stats.mean, stats.std, stats.low, stats.high))
    for o in offsets:
        rms = math.sqrt(sum(std[i] ** 2 + mean[i] ** 2 for i in (o, o + 1)) / 2.0)
        mean[o] = mean[o + 1] = 0.0
        std[o] = std[o + 1] = rms
        if low and high:
            bound = max(abs(v) for v in (low[o], low[o + 1], high[o], high[o + 1]))
            low[o] = low[o + 1] = -bound
            high[o] = high[o + 1] = bound
    return NormStats(tuple(mean), tuple(std), tuple(low), tuple(high))


class YawAugment:
    """Turns each sample of a batch (state history, label chunk, auxiliary targets) by its
    own random yaw in [-max, max] about the base z axis."""

    def __init__(self, max_deg: float, state_keys: Sequence[str],
                 auxiliary_keys: Sequence[str], action_representation: str) -> None:
        """TrainConfig has checked that these can turn (no camera, known layouts)."""
        self.max_rad = math.radians(max_deg)
        self.state_offsets = planar_offsets(state_keys)
        self.auxiliary_offsets = planar_offsets(auxiliary_keys)
        self.action_offsets = ACTION_PLANAR[action_representation]

    def normalization(self, stats: dict[str, NormStats], actions_turn: bool
                      ) -> dict[str, NormStats]:
        """`stats` with every turning pair made isotropic; the actions' only where the
        network predicts them in a frame that turns with the world (not the tool frame,
        which turns with the TCP and so sees the same action whatever the yaw)."""
        offsets = {'state': self.state_offsets, 'auxiliary': self.auxiliary_offsets,
                   'action': self.action_offsets if actions_turn else ()}
        return {key: isotropic_stats(value, offsets.get(key, ()))
                for key, value in stats.items()}

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        n = len(batch)
        yaw = (torch.rand(n, generator=generator, dtype=torch.float64) * 2.0 - 1.0) \
            * self.max_rad
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        return Batch(batch.images, rotate_planar(batch.state, self.state_offsets, cos, sin),
                     rotate_planar(batch.actions, self.action_offsets, cos, sin),
                     batch.valid, batch.weight,
                     rotate_planar(batch.auxiliary, self.auxiliary_offsets, cos, sin))
