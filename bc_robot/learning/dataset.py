"""Control-rate episodes → training batches: observation history, action chunks with a
padding mask, sample weights, train/validation split by episode, and normalization
statistics computed on the training split only (they go into the policy artifact).

Batches are gathered with precomputed index tables (one fancy-index per array), which on a
2-core machine is far cheaper than a per-item DataLoader with collation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bc_robot.core.spec import NormStats
from bc_robot.learning.convert import EpisodeArrays
from bc_robot.learning.frames import ActionFrame, objects_on_table

# Per-dimension std below this is treated as this (a constant dimension, e.g. the gripper
# in a task that never closes it, or a fixed orientation): normalizing by ~0 would blow up.
STD_FLOOR = 1e-2


def split_episodes(episodes: Sequence[EpisodeArrays], val_fraction: float, seed: int
                   ) -> tuple[list[EpisodeArrays], list[EpisodeArrays]]:
    """Split by episode (never by tick: neighbouring ticks are near-duplicates, a tick split
    would measure memorisation). At least one episode stays in training."""
    episodes = list(episodes)
    if val_fraction <= 0 or len(episodes) < 2:
        return episodes, []
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = min(len(episodes) - 1, max(1, int(round(val_fraction * len(episodes)))))
    val = set(order[:n_val].tolist())
    return ([e for i, e in enumerate(episodes) if i not in val],
            [e for i, e in enumerate(episodes) if i in val])


def vector_stats(rows: np.ndarray, name: str) -> NormStats:
    if rows.size == 0:
        raise ValueError(f'no {name} samples to compute normalization statistics from')
    rows = rows.astype(np.float64)
    std = np.maximum(rows.std(axis=0), STD_FLOOR)
    low = np.percentile(rows, 1, axis=0)
    high = np.percentile(rows, 99, axis=0)
    # A (near-)constant dimension still needs a non-empty bin range for the discrete head.
    narrow = high - low < STD_FLOOR
    center = 0.5 * (low + high)
    low = np.where(narrow, center - STD_FLOOR, low)
    high = np.where(narrow, center + STD_FLOOR, high)
    return NormStats(mean=tuple(rows.mean(axis=0)), std=tuple(std), low=tuple(low),
                     high=tuple(high))


def model_frame_actions(episode: EpisodeArrays, frame: ActionFrame) -> np.ndarray:
    """The episode's label chunks in the frame the network predicts in (relative to, or in
    the frame of, the TCP of each sample's latest observation: `frame`)."""
    latest = torch.from_numpy(episode.state[episode.history[:, -1]].astype(np.float64))
    actions = torch.from_numpy(episode.actions.astype(np.float64))
    return frame.to_model(actions, latest).numpy()


def compute_stats(episodes: Sequence[EpisodeArrays], frame: ActionFrame | None = None,
                  tcp: slice | None = None) -> dict[str, NormStats]:
    """'state' and 'action' statistics over the (training) episodes: every observation's
    state, every valid label of every chunk, in the network's action frame. With `tcp` (the
    ee_position slice; the auxiliary values are `sim_objects`) also 'objects': the cube's and
    goal's table positions, which an object readout predicts."""
    frame = frame or ActionFrame()
    actions = np.concatenate([model_frame_actions(e, frame)[e.valid] for e in episodes])
    stats = {'action': vector_stats(actions, 'action')}
    for key in ('state', 'auxiliary'):
        if episodes and getattr(episodes[0], key).shape[1] > 0:
            stats[key] = vector_stats(np.concatenate([getattr(e, key) for e in episodes]), key)
    if tcp is not None:
        table = [objects_on_table(torch.from_numpy(e.auxiliary.astype(np.float64)),
                                  torch.from_numpy(e.state[:, tcp].astype(np.float64)))
                 for e in episodes]
        stats['objects'] = vector_stats(torch.cat(table).numpy(), 'objects')
    return stats


@dataclass
class Batch:
    images: dict[str, torch.Tensor]  # camera → uint8 [B, T, H, W, 3]
    state: torch.Tensor              # float32 [B, T, D] raw units
    actions: torch.Tensor            # float32 [B, H, A] raw units
    valid: torch.Tensor              # bool [B, H] False where the chunk ran past the end
    weight: torch.Tensor             # float32 [B]
    auxiliary: torch.Tensor          # float32 [B, D_aux] raw units, at the latest observation

    def to(self, device: torch.device) -> Batch:
        return Batch({k: v.to(device, non_blocking=True) for k, v in self.images.items()},
                     self.state.to(device), self.actions.to(device), self.valid.to(device),
                     self.weight.to(device), self.auxiliary.to(device))

    def __len__(self) -> int:
        return int(self.actions.shape[0])


class ChunkDataset:
    """All samples of a set of episodes: sample i = one observation with its history
    (indices precomputed by the converter) and its label chunk + padding mask. Samples of
    weight 0 (HG-DAgger: what the policy did on its own) are left out of the sample set so
    they take no batch slots; their frames stay, as history of the samples after them."""

    def __init__(self, episodes: Sequence[EpisodeArrays], cameras: Sequence[str]) -> None:
        if not episodes:
            raise ValueError('no episodes to build a dataset from')
        self.cameras = list(cameras)
        for e in episodes:
            missing = [c for c in self.cameras if c not in e.images]
            if missing:
                raise ValueError(f'{e.source}: no frames for camera(s) {missing}')
        self.images = {c: np.concatenate([e.images[c] for e in episodes]) for c in self.cameras}
        self.state = np.concatenate([e.state for e in episodes]).astype(np.float32)
        self.auxiliary = np.concatenate([e.auxiliary for e in episodes]).astype(np.float32)
        self.actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        self.valid = np.concatenate([e.valid for e in episodes])
        self.weights = np.concatenate([e.weights for e in episodes]).astype(np.float32)
        self.human = np.concatenate([e.human for e in episodes])
        offsets = np.cumsum([0] + [len(e) for e in episodes[:-1]])
        self.obs_index = np.concatenate([o + e.history for o, e in zip(offsets, episodes)])
        weighted = self.weights > 0
        if not weighted.any():
            raise ValueError(f'every sample of {len(episodes)} episode(s) weighs 0 (dagger '
                             f'weights), nothing to train on: {episodes[0].source}, ...')
        self.actions, self.valid, self.weights, self.human, self.obs_index = (
            a[weighted] for a in (self.actions, self.valid, self.weights, self.human,
                                  self.obs_index))
        self.history = self.obs_index.shape[1]
        self.chunk_length = self.actions.shape[1]
        self.episode_count = len(episodes)

    def __len__(self) -> int:
        return int(self.obs_index.shape[0])

    def batch(self, indices: np.ndarray) -> Batch:
        indices = np.asarray(indices)
        obs = self.obs_index[indices]
        return Batch(
            images={c: torch.from_numpy(self.images[c][obs]) for c in self.cameras},
            state=torch.from_numpy(self.state[obs]),
            actions=torch.from_numpy(self.actions[indices]),
            valid=torch.from_numpy(self.valid[indices]),
            weight=torch.from_numpy(self.weights[indices]),
            auxiliary=torch.from_numpy(self.auxiliary[obs[:, -1]]))


class BatchSampler:
    """Epoch permutations (seeded by seed and epoch), each rank taking its own stride, so
    DDP ranks see disjoint samples without a DistributedSampler/DataLoader."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if size <= 0:
            raise ValueError('cannot sample batches from an empty dataset')
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self._queue = 0, np.zeros(0, dtype=np.int64)

    def state_dict(self) -> dict[str, int]:
        return {'epoch': self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state['epoch'])
        self._queue = np.zeros(0, dtype=np.int64)

    def next(self) -> np.ndarray:
        while self._queue.shape[0] < self.batch_size:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
            self.epoch += 1
            self._queue = np.concatenate([self._queue, order[self.rank::self.world_size]])
        out, self._queue = self._queue[:self.batch_size], self._queue[self.batch_size:]
        return out
