"""Evaluation helpers: where sampled chunks land relative to known modes (the bimodal test
and bench), offline action error of a policy on episodes, and running an exported model
folder in ONNX Runtime exactly as the policy node feeds it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ModeReport:
    """How N sampled chunks distribute over K reference chunks (position dims only)."""

    fractions: np.ndarray      # [K] share of samples within `radius` of mode k
    between: float             # share of samples near no mode
    distances: np.ndarray      # [N, K] RMS position distance (m) to each mode
    midpoint_distance: float   # mean RMS distance (m) to the average of the modes
    radius: float

    def covers_all(self, min_fraction: float) -> bool:
        return bool(np.all(self.fractions >= min_fraction))

    def summary(self) -> str:
        shares = ', '.join(f'{100 * f:.0f}%' for f in self.fractions)
        return (f'modes [{shares}], between {100 * self.between:.0f}%, mean distance to '
                f'midpoint {1000 * self.midpoint_distance:.1f} mm')


def mode_report(samples: np.ndarray, modes: np.ndarray, radius: float) -> ModeReport:
    """samples [N, H, A], modes [K, H, A]; a sample is near mode k when the RMS over the
    chunk of its position error to mode k is below `radius` (m)."""
    samples = np.asarray(samples, dtype=np.float64)
    modes = np.asarray(modes, dtype=np.float64)
    if samples.ndim != 3 or modes.ndim != 3 or samples.shape[1:] != modes.shape[1:]:
        raise ValueError(f'samples {list(samples.shape)} and modes {list(modes.shape)} must '
                         f'be [N, H, A] and [K, H, A]')
    diff = samples[:, None, :, :3] - modes[None, :, :, :3]
    distances = np.sqrt((diff ** 2).sum(-1).mean(-1))                 # [N, K]
    nearest = distances.argmin(1)
    near = distances.min(1) < radius
    fractions = np.array([np.mean(near & (nearest == k)) for k in range(modes.shape[0])])
    midpoint = modes.mean(0)[None, :, :3]
    mid = np.sqrt(((samples[:, :, :3] - midpoint) ** 2).sum(-1).mean(-1)).mean()
    return ModeReport(fractions, float(1 - near.mean()), distances, float(mid), radius)


class OnnxPolicy:
    """A model folder run in ONNX Runtime on CPU with the inputs the policy node feeds
    (zero prefix weights = no RTC prefix; fresh standard-normal noise per call)."""

    def __init__(self, model_dir: str | Path, threads: int = 1, seed: int = 0) -> None:
        from bc_robot.core.spec import load_spec
        from bc_robot.learning.export import ort_session
        self.spec = load_spec(model_dir)
        self.session = ort_session(Path(model_dir) / 'policy.onnx', threads)
        self.rng = np.random.default_rng(seed)

    def feed(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, (dtype, shape) in self.spec.expected_inputs().items():
            if name in observation:
                feed[name] = np.asarray(observation[name], dtype=dtype).reshape(shape)
            elif name == 'noise':
                feed[name] = self.rng.standard_normal(shape).astype(np.float32)
            elif name in ('prefix', 'prefix_weights'):
                feed[name] = np.zeros(shape, dtype=np.float32)
            else:
                raise ValueError(f'observation lacks input {name!r}')
        return feed

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(['actions'], self.feed(observation))[0][0]
