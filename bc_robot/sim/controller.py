"""Cartesian impedance control of the simulated arm, computed every physics step.

    τ = Jᵀ (K·e − D·ẋ) + qfrc_bias + N (K_n (q_home − q) − D_n q̇)

e is the TCP pose error (position, rotation vector) clipped per tick to a maximum norm (as
CRISP does, 0.1 m / 0.5 rad by default) so a far target gives a bounded pull instead of a
jump; qfrc_bias is MuJoCo's gravity + Coriolis + centrifugal term; N = I − Jᵀ J⁺ᵀ keeps the
posture term from disturbing the TCP. This is the controller a real Franka runs under
franka_ros2 / CRISP, so the behaviour the stack sees in sim carries over.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from bc_robot.core.pose import quat_normalize, quat_to_matrix, is_finite
from bc_robot.sim.model import ArmModel


@dataclass
class ImpedanceConfig:
    """Gains of the Cartesian impedance controller (SI units)."""

    translational_stiffness: float = 1000.0  # N/m
    rotational_stiffness: float = 50.0       # N·m/rad
    translational_damping: float = 150.0     # N·s/m
    rotational_damping: float = 5.0          # N·m·s/rad
    nullspace_stiffness: float = 4.0         # N·m/rad toward the home posture
    nullspace_damping: float = 1.0           # N·m·s/rad
    max_position_error: float = 0.1          # m, error clipped per tick
    max_rotation_error: float = 0.5          # rad, error clipped per tick

    def __post_init__(self) -> None:
        for name in ('translational_stiffness', 'rotational_stiffness',
                     'translational_damping', 'rotational_damping',
                     'nullspace_stiffness', 'nullspace_damping'):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f'{name} must be a finite value >= 0, got {value!r}')
        for name in ('max_position_error', 'max_rotation_error'):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f'{name} must be a finite value > 0, got {value!r}')


def _clip_norm(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = math.sqrt(vector @ vector)
    return vector * (limit / norm) if norm > limit else vector.copy()


class CartesianImpedance:
    """Holds the target (position + rotation matrix) and writes arm torques into data.ctrl."""

    def __init__(self, arm: ArmModel, config: ImpedanceConfig | None = None) -> None:
        self.arm = arm
        self.config = config or ImpedanceConfig()
        self._jacp = np.zeros((3, arm.model.nv))
        self._jacr = np.zeros((3, arm.model.nv))
        self._quat_cur = np.zeros(4)
        self._quat_tgt = np.zeros(4)
        self._quat_err = np.zeros(4)
        self._quat_neg = np.zeros(4)
        self._rotvec = np.zeros(3)
        self._jac = np.zeros((6, 7))
        self._wrench = np.zeros(6)
        self._x6 = np.zeros(6)
        self._tau_low = arm.torque_limits[:, 0].copy()
        self._tau_high = arm.torque_limits[:, 1].copy()
        self._posture = arm.home_q.copy()
        self.target_position = arm.tcp_position()
        self._set_target_rotation(arm.tcp_rotation())
        self.last_error = np.zeros(6)

    def set_config(self, config: ImpedanceConfig) -> None:
        self.config = config

    def set_posture(self, q: np.ndarray) -> None:
        self._posture = np.asarray(q, dtype=np.float64).copy()

    def hold_current(self) -> None:
        """Target = where the TCP is now (used at start-up and after a reset)."""
        self.target_position = self.arm.tcp_position()
        self._set_target_rotation(self.arm.tcp_rotation())

    def set_target(self, position: np.ndarray, quaternion_xyzw: np.ndarray) -> None:
        """Validated target; raises ValueError (naming the values) on NaN or a non-unit
        quaternion so the caller can count and ignore it — the arm keeps its old target."""
        position = np.asarray(position, dtype=np.float64).reshape(-1)
        if position.shape != (3,) or not is_finite(position):
            raise ValueError(f'target position is not 3 finite values: {position.tolist()}')
        q = quat_normalize(quaternion_xyzw)
        self.target_position = position.copy()
        self._set_target_rotation(quat_to_matrix(q))

    def _set_target_rotation(self, rotation: np.ndarray) -> None:
        self.target_rotation = np.asarray(rotation, dtype=np.float64).copy()
        mujoco.mju_mat2Quat(self._quat_tgt, self.target_rotation.reshape(-1))

    def compute(self) -> np.ndarray:
        """Torques for the current state (after mj_step1 / mj_forward); also written to ctrl.

        Runs every physics step from Python, so it avoids numpy's per-call overhead where it
        can: preallocated arrays, MuJoCo's own quaternion and Cholesky routines, one solve."""
        cfg = self.config
        m, d, arm = self.arm.model, self.arm.data, self.arm
        site, dofs = arm.tcp_site, arm.arm_dof_slice
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, site)
        jac = self._jac
        jac[:3] = self._jacp[:, dofs]
        jac[3:] = self._jacr[:, dofs]
        # Rotation error as a rotation vector in the base frame: q_err = q_tgt ⊗ q_cur⁻¹.
        mujoco.mju_mat2Quat(self._quat_cur, d.site_xmat[site])
        mujoco.mju_negQuat(self._quat_neg, self._quat_cur)
        mujoco.mju_mulQuat(self._quat_err, self._quat_tgt, self._quat_neg)
        if self._quat_err[0] < 0.0:  # shortest way round
            self._quat_err *= -1.0
        mujoco.mju_quat2Vel(self._rotvec, self._quat_err, 1.0)
        e_pos = _clip_norm(self.target_position - d.site_xpos[site], cfg.max_position_error)
        e_rot = _clip_norm(self._rotvec, cfg.max_rotation_error)
        qd = d.qvel[dofs]
        twist = jac @ qd
        wrench = self._wrench
        wrench[:3] = cfg.translational_stiffness * e_pos - cfg.translational_damping * twist[:3]
        wrench[3:] = cfg.rotational_stiffness * e_rot - cfg.rotational_damping * twist[3:]
        tau = jac.T @ wrench + d.qfrc_bias[dofs]
        # Null-space posture torque t0 projected with N = I - Jᵀ (J Jᵀ)⁻¹ J, i.e.
        # t0 - Jᵀ x with (J Jᵀ) x = J t0: one 6x6 Cholesky solve.
        t0 = cfg.nullspace_stiffness * (self._posture - d.qpos[arm.arm_qpos_slice]) \
            - cfg.nullspace_damping * qd
        jjt = jac @ jac.T
        jjt.flat[::7] += 1e-6
        mujoco.mju_cholFactor(jjt, 0.0)
        mujoco.mju_cholSolve(self._x6, jjt, jac @ t0)
        tau += t0 - jac.T @ self._x6
        np.clip(tau, self._tau_low, self._tau_high, out=tau)
        d.ctrl[arm.arm_ctrl_slice] = tau
        self.last_error[:3] = e_pos
        self.last_error[3:] = e_rot
        return tau
