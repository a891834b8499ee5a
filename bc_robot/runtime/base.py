"""The one interface every policy backend implements, so the policy node and the benches
never care whether ONNX Runtime or a debugging torch module computes the chunk."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping

import numpy as np

from bc_robot.core.spec import PolicySpec


class PolicyBackend(ABC):
    """`infer(inputs) -> chunk`: inputs keyed by the spec's ONNX input names *without* the
    batch dimension (image.<cam> uint8 [history, H, W, 3], state float32 [history, D],
    prefix [chunk, A], prefix_weights [chunk]); the chunk is float32 [chunk_length,
    action_dim] in raw units. Backends fill inputs the node does not provide (noise).
    `reset()` forgets per-episode state (noise generator) before a new episode."""

    spec: PolicySpec
    provider: str = 'unknown'

    @abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One chunk for one observation."""

    @abstractmethod
    def reset(self) -> None:
        """Start a new episode."""

    def close(self) -> None:
        """Release sessions/devices (optional)."""
