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


def state_parts(ee_pose: Pose, gripper: float, joint_positions: Sequence[float],
                sim_objects: Sequence[float] | None = None) -> Mapping[str, np.ndarray]:
    """Every known state key computed from one measurement. A NaN/Inf anywhere is refused
    here, naming the part, rather than reaching the policy and, through it, the arm.
    `sim_objects` (cube x, y, z, goal x, y: the simulator's ground truth) is only there
    when given."""
    q = quat_canonical(quat_normalize(ee_pose.orientation))
    joints = np.asarray(joint_positions, dtype=np.float64).reshape(-1)
    if joints.shape[0] != STATE_KEY_DIMS['joint_positions']:
        raise ValueError(f'expected {STATE_KEY_DIMS["joint_positions"]} arm joint positions, '
                         f'got {joints.shape[0]}')
    for name, values in (('ee_position', ee_pose.position), ('gripper', [gripper]),
                         ('joint_positions', joints)):
        if not is_finite(values):
            raise ValueError(f'state {name} is not finite: {np.asarray(values).tolist()}')
    parts = {
        'ee_position': ee_pose.position,
        'ee_rot6d': quat_to_rot6d(q),
        'ee_quaternion': q,
        'gripper': np.array([float(gripper)]),
        'joint_positions': joints,
    }
    if sim_objects is not None:
        parts['sim_objects'] = sim_object_offsets(ee_pose.position, sim_objects)
    return parts


def sim_object_offsets(tcp: Sequence[float], cube_and_goal: Sequence[float]) -> np.ndarray:
    """cube − TCP and goal − cube: where things are relative to what the policy moves,
    so the positions of 45 training scenes need not be memorised."""
    values = np.asarray(cube_and_goal, dtype=np.float64).reshape(-1)
    if values.shape[0] != 5 or not is_finite(values):
        raise ValueError(f'sim_objects needs cube x, y, z and goal x, y (finite), got '
                         f'{values.tolist()}')
    return np.concatenate([values[:3] - np.asarray(tcp, dtype=np.float64), values[3:] -
                           values[:2]])


def build_state_vector(state_keys: Sequence[str], ee_pose: Pose, gripper: float,
                       joint_positions: Sequence[float],
                       sim_objects: Sequence[float] | None = None) -> np.ndarray:
    _check_keys(state_keys)
    parts = state_parts(ee_pose, gripper, joint_positions, sim_objects)
    if 'sim_objects' in state_keys and 'sim_objects' not in parts:
        raise ValueError('state key sim_objects needs the simulator\'s cube and goal positions '
                         '(/sim/task_state); none were given')
    if not state_keys:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([parts[k] for k in state_keys]).astype(np.float32)
