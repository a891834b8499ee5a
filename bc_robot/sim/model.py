"""The MuJoCo arm model and the one place that knows its MJCF names and array layout.

Everything else (controller, tasks, world, nodes) asks this wrapper for joint values, the TCP
pose or object positions, so a change to the MJCF is absorbed here.
"""
from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from bc_robot.core.pose import Pose, matrix_to_quat

ASSET_PATH = Path(__file__).resolve().parent / 'assets' / 'arm.xml'
ARM_JOINTS = tuple(f'joint{i}' for i in range(1, 8))
FINGER_JOINTS = ('finger_joint1', 'finger_joint2')
JOINT_NAMES = ARM_JOINTS + FINGER_JOINTS
FINGER_TRAVEL = 0.04  # m per finger; opening 1.0 = both fingers at 0.04 (8 cm gap)
CAMERAS = ('front', 'wrist')
CUBE_HALF_SIZE = 0.025
HOME_KEY = 'home'


class ArmModel:
    """MjModel + MjData of the arm scene with cached indices into qpos/qvel/ctrl."""

    def __init__(self, xml_path: str | Path = ASSET_PATH) -> None:
        self.model = mujoco.MjModel.from_xml_path(str(xml_path))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.arm_qpos = np.array([m.jnt_qposadr[m.joint(n).id] for n in ARM_JOINTS])
        self.arm_dof = np.array([m.jnt_dofadr[m.joint(n).id] for n in ARM_JOINTS])
        self.finger_qpos = np.array([m.jnt_qposadr[m.joint(n).id] for n in FINGER_JOINTS])
        self.finger_dof = np.array([m.jnt_dofadr[m.joint(n).id] for n in FINGER_JOINTS])
        self.joint_qpos = np.concatenate([self.arm_qpos, self.finger_qpos])
        self.joint_dof = np.concatenate([self.arm_dof, self.finger_dof])
        self.arm_ctrl = np.array([m.actuator(n).id for n in ARM_JOINTS])
        self.finger_ctrl = np.array([m.actuator(n).id for n in FINGER_JOINTS])
        # The arm's qpos/dof/ctrl entries are contiguous: slices (views) keep the per-step
        # controller free of fancy-indexing copies.
        self.arm_qpos_slice = _as_slice(self.arm_qpos)
        self.arm_dof_slice = _as_slice(self.arm_dof)
        self.arm_ctrl_slice = _as_slice(self.arm_ctrl)
        self.arm_limits = m.jnt_range[[m.joint(n).id for n in ARM_JOINTS]].copy()
        self.torque_limits = m.actuator_ctrlrange[self.arm_ctrl].copy()
        self.tcp_site = m.site('tcp').id
        cube_joint = m.joint('cube').id
        self.cube_qpos = int(m.jnt_qposadr[cube_joint])
        self.cube_dof = int(m.jnt_dofadr[cube_joint])
        self.cube_body = m.body('cube').id
        self.goal_mocap = int(m.body_mocapid[m.body('goal').id])
        self.marker_mocap = int(m.body_mocapid[m.body('marker').id])
        self.goal_geom = m.geom('goal').id
        self.marker_geom = m.geom('marker').id
        self.home_key = m.key(HOME_KEY).id
        self.home_q = m.key_qpos[self.home_key][self.arm_qpos].copy()
        self.reset_home()

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset_home(self) -> None:
        """Arm at home, fingers open, cube and markers at their key positions, time 0."""
        mujoco.mj_resetDataKeyframe(self.model, self.data, self.home_key)
        mujoco.mj_forward(self.model, self.data)

    def tcp_position(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp_site].copy()

    def tcp_rotation(self) -> np.ndarray:
        return self.data.site_xmat[self.tcp_site].reshape(3, 3).copy()

    def tcp_pose(self) -> Pose:
        return Pose(self.tcp_position(), matrix_to_quat(self.tcp_rotation()))

    def joint_positions(self) -> np.ndarray:
        """7 arm angles (rad) then 2 finger positions (m), in JOINT_NAMES order."""
        return self.data.qpos[self.joint_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.joint_dof].copy()

    def joint_efforts(self) -> np.ndarray:
        """Applied arm torques (N·m) and finger actuator forces (N)."""
        return self.data.qfrc_actuator[self.joint_dof].copy()

    def gripper_opening(self) -> float:
        """Measured opening in [0, 1] (1 = open), the mean of both fingers."""
        opening = float(np.mean(self.data.qpos[self.finger_qpos])) / FINGER_TRAVEL
        return min(1.0, max(0.0, opening))

    def set_gripper_command(self, opening: float) -> None:
        self.data.ctrl[self.finger_ctrl] = min(1.0, max(0.0, opening)) * FINGER_TRAVEL

    def cube_position(self) -> np.ndarray:
        return self.data.qpos[self.cube_qpos:self.cube_qpos + 3].copy()

    def place_cube(self, xy: np.ndarray, yaw: float) -> None:
        q = self.data.qpos
        q[self.cube_qpos:self.cube_qpos + 3] = [xy[0], xy[1], CUBE_HALF_SIZE]
        q[self.cube_qpos + 3:self.cube_qpos + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[self.cube_dof:self.cube_dof + 6] = 0.0

    def nudge_cube(self, velocity_xy: tuple[float, float]) -> None:
        """Add this table-plane velocity (m/s) to the cube, as a flick of a finger would."""
        self.data.qvel[self.cube_dof:self.cube_dof + 2] += velocity_xy

    def goal_position(self) -> np.ndarray:
        return self.data.mocap_pos[self.goal_mocap].copy()

    def place_goal(self, xy: np.ndarray) -> None:
        self.data.mocap_pos[self.goal_mocap] = [xy[0], xy[1], 0.0006]

    def marker_position(self) -> np.ndarray:
        return self.data.mocap_pos[self.marker_mocap].copy()

    def place_marker(self, xyz: np.ndarray) -> None:
        self.data.mocap_pos[self.marker_mocap] = xyz

    def set_visible(self, goal: bool, marker: bool) -> None:
        """Show only the visual-only objects the active task uses."""
        self.model.geom_rgba[self.goal_geom, 3] = 1.0 if goal else 0.0
        self.model.geom_rgba[self.marker_geom, 3] = 1.0 if marker else 0.0

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)


def _as_slice(indices: np.ndarray) -> slice:
    start = int(indices[0])
    if not np.array_equal(indices, np.arange(start, start + len(indices))):
        raise ValueError(f'arm indices must be contiguous in the model, got {indices.tolist()}')
    return slice(start, start + len(indices))
