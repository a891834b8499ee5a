"""The labelled state vector shared by observation_node (/bc/obs/state) and the dataset.

Its layout is fixed by the policy spec's `state_keys`; `state_labels` names each element so
the vector published as a JointState can be checked by name, not position."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bc_robot.core.pose import Pose, is_finite, quat_canonical, quat_normalize, quat_to_rot6d
from bc_robot.core.spec import STATE_KEY_DIMS


def _check_keys(state_keys: Sequence[str]) -> None:
    for key in state_keys:
        if key not in STATE_KEY_DIMS:
            raise ValueError(f'state key {key!r} is unknown; known: {", ".join(STATE_KEY_DIMS)}')


def state_labels(state_keys: Sequence[str]) -> list[str]:
    _check_keys(state_keys)
    labels = []
    for key in state_keys:
        dim = STATE_KEY_DIMS[key]
        labels += [key] if dim == 1 else [f'{key}.{i}' for i in range(dim)]
    return labels


def state_slice(state_keys: Sequence[str], key: str) -> slice:
    """Where `key` sits in the state vector laid out by `state_keys`."""
    _check_keys(state_keys)
    if key not in state_keys:
        raise ValueError(f'state key {key!r} is not in the state layout {list(state_keys)}')
    start = 0
    for name in state_keys[:list(state_keys).index(key)]:
        start += STATE_KEY_DIMS[name]
    return slice(start, start + STATE_KEY_DIMS[key])


def gripper_opening(finger_positions: Sequence[float], finger_travel: float) -> float:
    """Measured gripper opening (1 = open) from the finger joint positions (m): their mean
    over one finger's full travel. Not clipped, so a sensor glitch stays visible. Used by
    observation_node and the in-process rollout, so both read the gripper the same way."""
    fingers = np.asarray(finger_positions, dtype=np.float64).reshape(-1)
    return float(np.mean(fingers)) / finger_travel if fingers.size else 0.0


def state_parts(ee_pose: Pose, gripper: float, joint_positions: Sequence[float]
                ) -> Mapping[str, np.ndarray]:
    """Every known state key computed from one measurement. A NaN/Inf anywhere is refused
    here, naming the part, rather than reaching the policy and, through it, the arm."""
    q = quat_canonical(quat_normalize(ee_pose.orientation))
    joints = np.asarray(joint_positions, dtype=np.float64).reshape(-1)
    if joints.shape[0] != STATE_KEY_DIMS['joint_positions']:
        raise ValueError(f'expected {STATE_KEY_DIMS["joint_positions"]} arm joint positions, '
                         f'got {joints.shape[0]}')
    for name, values in (('ee_position', ee_pose.position), ('gripper', [gripper]),
                         ('joint_positions', joints)):
        if not is_finite(values):
            raise ValueError(f'state {name} is not finite: {np.asarray(values).tolist()}')
    return {
        'ee_position': ee_pose.position,
        'ee_rot6d': quat_to_rot6d(q),
        'ee_quaternion': q,
        'gripper': np.array([float(gripper)]),
        'joint_positions': joints,
    }


def build_state_vector(state_keys: Sequence[str], ee_pose: Pose, gripper: float,
                       joint_positions: Sequence[float]) -> np.ndarray:
    _check_keys(state_keys)
    parts = state_parts(ee_pose, gripper, joint_positions)
    if not state_keys:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([parts[k] for k in state_keys]).astype(np.float32)
