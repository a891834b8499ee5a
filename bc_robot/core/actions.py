"""Action vectors ⇄ (Pose, gripper) for each `action_representation` of the policy spec.

A policy emits raw action vectors; executors average and blend them (temporal ensembling,
overlap blending) before they become a target. Both steps live here so that averaging
quaternions (sign-aligned, renormalized) and 6D rotations (Gram-Schmidt after the mean)
is done the same way everywhere, and so a NaN or a degenerate rotation is refused with a
message naming the action instead of reaching the controller.

The axial layout (`ee_pose_axial_gripper`) does not tell a rotation from the same one turned
half a turn about the tool axis; `to_target` picks between the two with the `reference`
orientation (the measured TCP), so the arm never turns half a turn for a symmetric tool.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from bc_robot.core.pose import (Pose, axial_to_quat, is_finite, quat_canonical,
                                quat_normalize, quat_to_axial, quat_to_rot6d, rot6d_to_quat)
from bc_robot.core.spec import ACTION_DIMS, AXIAL_ACTIONS, QUATERNION_ACTIONS

# A policy that predicts a gripper opening slightly outside [0, 1] (regression overshoot)
# is clipped; one further out than this is a fault, not overshoot.
GRIPPER_TOLERANCE = 0.25


class ActionLayout:
    """The layout of one action vector: position (3), rotation (4 quaternion x,y,z,w, 6D,
    or 9 axial: z axis and x xᵀ), gripper opening (1)."""

    def __init__(self, representation: str) -> None:
        if representation not in ACTION_DIMS:
            raise ValueError(f'action_representation {representation!r} is not one of '
                             f'{", ".join(ACTION_DIMS)}')
        self.representation = representation
        self.dim = ACTION_DIMS[representation]
        self.uses_quaternion = representation == QUATERNION_ACTIONS
        self.uses_axial = representation == AXIAL_ACTIONS
        self.rotation = slice(3, self.dim - 1)

    def to_target(self, action: np.ndarray, reference: np.ndarray | None = None
                  ) -> tuple[Pose, float]:
        """One action vector → (Pose in the base frame, gripper opening clipped to [0, 1]).
        `reference` (quaternion x, y, z, w) resolves the axial layout's half-turn: the
        orientation nearer it is taken (nearer pointing down, x along base +x, when None);
        other layouts ignore it.
        Raises ValueError naming the problem for a wrong size, a non-finite value, an
        invalid rotation or a gripper value far outside [0, 1]."""
        vector = np.asarray(action, dtype=np.float64).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f'{self.representation} action needs {self.dim} values, got '
                             f'{vector.shape[0]}')
        if not is_finite(vector):
            raise ValueError(f'action has a non-finite value: {vector.tolist()}')
        rotation = vector[self.rotation]
        if self.uses_quaternion:
            # Blended quaternions are slightly short of unit norm: allow it, but never
            # "repair" a zero or garbage quaternion.
            norm = float(np.linalg.norm(rotation))
            if not 0.5 <= norm <= 1.5:
                raise ValueError(f'action quaternion {rotation.tolist()} has norm {norm:.4g}, '
                                 f'not a rotation')
            quaternion = quat_canonical(rotation / norm)
        elif self.uses_axial:
            quaternion = axial_to_quat(rotation, reference)
        else:
            quaternion = rot6d_to_quat(rotation)
        gripper = float(vector[-1])
        if not -GRIPPER_TOLERANCE <= gripper <= 1.0 + GRIPPER_TOLERANCE:
            raise ValueError(f'action gripper opening {gripper:.4g} is outside [0, 1] by more '
                             f'than {GRIPPER_TOLERANCE}')
        return Pose(vector[:3], quaternion), min(1.0, max(0.0, gripper))

    def from_target(self, pose: Pose, gripper: float) -> np.ndarray:
        """(Pose, gripper) → action vector (float64)."""
        q = quat_canonical(quat_normalize(pose.orientation))
        rotation = (q if self.uses_quaternion else
                    quat_to_axial(q) if self.uses_axial else quat_to_rot6d(q))
        return np.concatenate([pose.position, rotation, [float(gripper)]])

    def validate_chunk(self, chunk: np.ndarray, expected_length: int | None = None
                       ) -> np.ndarray:
        """Check a whole chunk [H, dim] before any of it is executed; returns a float64
        copy with quaternions sign-aligned along the chunk (so blending never averages q
        with −q). Raises ValueError naming the first bad action."""
        array = np.asarray(chunk, dtype=np.float64)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f'chunk must be [H, {self.dim}] for {self.representation}, got '
                             f'{list(array.shape)}')
        if expected_length is not None and array.shape[0] != expected_length:
            raise ValueError(f'chunk has {array.shape[0]} actions, expected {expected_length}')
        for index, action in enumerate(array):
            try:
                self.to_target(action)
            except ValueError as exc:
                raise ValueError(f'chunk action {index}: {exc}') from None
        array = array.copy()
        if self.uses_quaternion:
            for index in range(array.shape[0]):
                reference = array[index - 1, 3:7] if index else np.array([0, 0, 0, 1.0])
                if np.dot(array[index, 3:7], reference) < 0:
                    array[index, 3:7] *= -1
        return array

    def blend(self, actions: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """Weighted mean of action vectors (weights need not sum to 1). Quaternions are
        sign-aligned to the first one before averaging; the result is a valid action
        (quaternion renormalized, 6D and axial left to to_target's orthogonalization)."""
        stacked = np.asarray(actions, dtype=np.float64).reshape(-1, self.dim)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != stacked.shape[0]:
            raise ValueError(f'{stacked.shape[0]} actions but {w.shape[0]} weights')
        if not is_finite(w) or np.any(w < 0) or float(w.sum()) <= 0:
            raise ValueError(f'blend weights must be finite, >= 0 and not all 0: {w.tolist()}')
        if self.uses_quaternion:
            stacked = stacked.copy()
            reference = stacked[0, 3:7]
            flip = stacked[:, 3:7] @ reference < 0
            stacked[flip, 3:7] *= -1
        mean = (w[:, None] * stacked).sum(axis=0) / w.sum()
        if self.uses_quaternion:
            norm = np.linalg.norm(mean[3:7])
            if norm > 1e-9:
                mean[3:7] /= norm
        return mean

    def interpolate(self, earlier: np.ndarray, later: np.ndarray, fraction: float
                    ) -> np.ndarray:
        """Row-wise (1 − fraction)·earlier + fraction·later (one fraction, or one per row),
        for consecutive rows of a validated chunk (quaternions already sign-aligned);
        quaternions renormalized, 6D and axial rotations left to to_target, as in `blend`."""
        f = np.asarray(fraction, dtype=np.float64)
        if not bool(np.all((f >= 0.0) & (f <= 1.0))):
            raise ValueError(f'interpolation fraction must be in [0, 1], got {fraction!r}')
        if f.ndim:   # one fraction per row
            f = f[..., None]
        mixed = (1.0 - f) * np.asarray(earlier, dtype=np.float64) \
            + f * np.asarray(later, dtype=np.float64)
        if self.uses_quaternion:
            norms = np.linalg.norm(mixed[..., 3:7], axis=-1, keepdims=True)
            mixed[..., 3:7] /= np.maximum(norms, 1e-9)
        return mixed

    def position(self, action: np.ndarray) -> np.ndarray:
        return np.asarray(action, dtype=np.float64)[:3]
