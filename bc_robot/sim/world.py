"""The simulated world as one object: arm model + impedance controller + task + episodes.

Pure (no rclpy): the sim_arm node wires it to topics, the in-process episode runner and the
tests drive it directly, so all three exercise exactly the same physics and rules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from bc_robot.core.pose import Pose
from bc_robot.sim.controller import CartesianImpedance, ImpedanceConfig
from bc_robot.sim.disturbance import Nudge, NudgeConfig, nudge_schedule
from bc_robot.sim.model import ASSET_PATH, ArmModel
from bc_robot.sim.tasks import Scene, TaskConfig, evaluate, sample_scene

HOME_POSITION = np.array([0.45, 0.0, 0.30])
HOME_ORIENTATION = np.array([1.0, 0.0, 0.0, 0.0])  # (x, y, z, w): gripper pointing down


@dataclass
class SimConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    impedance: ImpedanceConfig = field(default_factory=ImpedanceConfig)
    seed: int = 0
    nudges: NudgeConfig = field(default_factory=NudgeConfig)  # push: cube nudges (recording)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f'seed must be an int >= 0, got {self.seed!r}')


class SimWorld:
    """Arm + controller + task. Episode k after the seed was set uses scene seed `seed + k`,
    so a reset after setting the same seed reproduces the same scene."""

    def __init__(self, config: SimConfig | None = None, xml_path: str | Path = ASSET_PATH) -> None:
        self.config = config or SimConfig()
        self.arm = ArmModel(xml_path)
        self.controller = CartesianImpedance(self.arm, self.config.impedance)
        self.episode = -1
        self._next_offset = 0
        self.scene: Scene | None = None
        self.rejected_targets = 0
        self.rejections: dict[str, int] = {}
        self.rejected_gripper = 0
        self.gripper_target = 1.0
        self.success = False
        self.pending_nudges: list[Nudge] = []
        self.reset()

    # --- episodes -------------------------------------------------------------------------
    def set_seed(self, seed: int) -> None:
        """The next reset starts a fresh sequence: its scene uses exactly `seed`."""
        self.config = replace(self.config, seed=int(seed))
        self._next_offset = 0

    def reset(self) -> dict[str, Any]:
        """New episode: arm home (holding), gripper open, scene from the next seed. Sim time
        keeps running (a /clock must never jump back)."""
        now = self.arm.data.time
        self.episode += 1
        self.scene = sample_scene(self.config.task, self.config.seed + self._next_offset)
        self._next_offset += 1
        self.arm.reset_home()
        self.arm.data.time = now
        self.arm.place_cube(self.scene.cube_xy, self.scene.cube_yaw)
        self.arm.place_goal(self.scene.goal_xy)
        self.arm.place_marker(self.scene.marker)
        is_push = self.config.task.name == 'push'
        self.arm.set_visible(goal=is_push, marker=not is_push)
        self.arm.forward()
        self.controller.hold_current()
        self.gripper_target = 1.0
        self.arm.set_gripper_command(1.0)
        self.success = False
        self.episode_start = now
        self.pending_nudges = (nudge_schedule(self.config.nudges, self.scene.seed)
                               if is_push else [])
        return self.task_state()

    # --- commands ------------------------------------------------------------------------
    def set_target(self, pose: Pose) -> str | None:
        """Track `pose`; a NaN or non-unit-quaternion pose is ignored (the arm keeps its
        target) and counted. Returns None when accepted, else the reason."""
        try:
            self.controller.set_target(pose.position, pose.orientation)
        except ValueError as exc:
            finite = np.all(np.isfinite(pose.position)) and np.all(np.isfinite(pose.orientation))
            self.count_rejection('non_finite' if not finite else 'quaternion_norm')
            return str(exc)
        return None

    def count_rejection(self, reason: str) -> None:
        """Count a refused target by reason (reported on /diagnostics)."""
        self.rejected_targets += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def set_gripper(self, opening: float) -> str | None:
        """Opening in [0, 1] (1 = open); values slightly outside are clipped, NaN/Inf ignored."""
        if not math.isfinite(opening):
            self.rejected_gripper += 1
            return f'gripper opening is not finite: {opening!r}'
        self.gripper_target = min(1.0, max(0.0, float(opening)))
        self.arm.set_gripper_command(self.gripper_target)
        return None

    def set_impedance(self, config: ImpedanceConfig) -> None:
        self.config = replace(self.config, impedance=config)
        self.controller.set_config(config)

    # --- physics -------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """n physics steps (1 ms each) with the controller evaluated every step."""
        m, d, compute = self.arm.model, self.arm.data, self.controller.compute
        for _ in range(n):
            if self.pending_nudges and d.time - self.episode_start >= self.pending_nudges[0].time:
                self.arm.nudge_cube(self.pending_nudges.pop(0).velocity)
            mujoco.mj_step1(m, d)
            compute()
            mujoco.mj_step2(m, d)

    @property
    def time(self) -> float:
        return float(self.arm.data.time)

    @property
    def timestep(self) -> float:
        return self.arm.timestep

    # --- state ---------------------------------------------------------------------------
    def tcp_pose(self) -> Pose:
        return self.arm.tcp_pose()

    def evaluate(self) -> tuple[float, bool]:
        arm = self.arm
        distance, success = evaluate(self.config.task, arm.tcp_position(), arm.cube_position(),
                                     arm.goal_position(), arm.marker_position())
        self.success = success
        return distance, success

    def counters(self) -> dict[str, Any]:
        """Episode, sim time and refused-command counts, for /diagnostics."""
        return {'episode': self.episode, 'sim_time': round(self.time, 3),
                'success': self.success, 'rejected_targets': self.rejected_targets,
                **{f'rejected_{k}': v for k, v in sorted(self.rejections.items())},
                'rejected_gripper': self.rejected_gripper}

    def task_state(self) -> dict[str, Any]:
        """Ground truth for evaluation, the payload of /sim/task_state (JSON)."""
        distance, success = self.evaluate()
        arm = self.arm
        state: dict[str, Any] = {
            'task': self.config.task.name,
            'episode': self.episode,
            'seed': self.scene.seed,
            'time': round(self.time, 6),
            'episode_time': round(self.time - self.episode_start, 6),
            'success': success,
            'tcp': _rounded(arm.tcp_position()),
            'distance': round(distance, 6),
            'success_radius': self.config.task.success_radius,
        }
        if self.config.task.name == 'push':
            state['cube'] = _rounded(arm.cube_position())
            state['goal'] = _rounded(arm.goal_position()[:2])
        else:
            state['marker'] = _rounded(arm.marker_position())
        return state


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
