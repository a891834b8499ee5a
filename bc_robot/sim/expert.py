"""The scripted human: plans and drives `push` and `reach` the way a person with a SpaceMouse
does — by commanding velocities while watching the arm — so the same output can be published
as a spacenav twist (teleop mode), integrated into a target pose (direct mode), or used to
take over when a policy goes wrong (correction mode).

Pure Python + numpy: the sim_expert node, the in-process episode runner (bc_robot.sim.runner)
and the evaluation loop reuse it. Everything random comes from the numpy Generator passed in,
so an episode is reproducible from its seed.

Push strategy (closed loop on the cube's measured position, recomputed every tick):
  1. above_side — hover beside the cube, on the episode's side (left or right of the push
     line, chosen at random per episode: the demonstrations are bimodal), gripper closed and
     yawed so the two closed fingers form a 4 cm paddle facing the push direction
     (`side_offset` 0: on the push line behind the cube instead, the straight approach);
  2. descend   — down to push height beside the cube;
  3. behind    — slide behind the cube (opposite the goal);
  4. push      — push toward the goal, steering the paddle back onto the cube-goal line;
                 if the cube slips off the paddle, lift and re-approach from behind;
  5. retreat   — lift clear so the cameras see the result, then done.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bc_robot.core.pose import Pose, quat_multiply, quat_normalize, rotvec_to_quat

CUBE_HALF = 0.025
PADDLE_HALF_DEPTH = 0.011  # closed fingers, half thickness along the push direction
PADDLE_HALF_WIDTH = 0.02   # closed fingers, half width across the push direction
APPROACH_CLEARANCE = 0.005  # the paddle descends at least this far from the cube
# Correction: a push is watched while the cube moves PUSH_SPEED (m/s) over PUSH_WINDOW (s),
# the paddle within CONTACT_MARGIN of it, the cube CONTACT_GOAL_CLEARANCE (m) from the goal.
PUSH_WINDOW = 0.1
PUSH_SPEED = 0.01
CONTACT_MARGIN = 0.015
CONTACT_GOAL_CLEARANCE = 0.04
SIDES = {-1: 'right', 1: 'left'}


@dataclass
class ExpertConfig:
    """Speeds in m/s and rad/s, distances in m, times in s."""

    max_speed: float = 0.15
    descend_speed: float = 0.10
    push_speed: float = 0.06
    gain: float = 2.5              # 1/s: speed = gain × distance, capped (a human slows down)
    yaw_gain: float = 3.0
    max_yaw_rate: float = 0.6
    hover_height: float = 0.08
    push_height: float = 0.025
    side_offset: float = 0.10      # beside the cube, across the push line
    side_back: float = 0.05        # ... and this far back along it
    behind_offset: float = 0.065   # start of the push, cube centre to paddle centre
    goal_tolerance: float = 0.008  # stop pushing when the cube is this close to the goal
    waypoint_tolerance: float = 0.012
    realign_lateral: float = 0.035  # lift and re-approach when the paddle is this far off line
    retreat_height: float = 0.12
    noise: float = 0.15            # velocity noise, fraction of the phase speed
    noise_time: float = 0.4        # noise correlation time
    speed_variation: float = 0.25  # per-episode speed factor in 1 ± this
    # Per-episode factors in 1 ± this on side_offset, side_back and behind_offset, each drawn
    # on its own: the demonstrations then cross the region around the cube in many paths,
    # not one, so a policy that strays off one path has been shown the way on from there.
    plan_variation: float = 0.0
    # Each episode's push starts up to this far across the push line (m, uniform, either
    # side): the push then steers back onto the line, so the demonstrations show what to do
    # with a paddle off centre — the state a policy drifts into — and not only on it.
    lateral_variation: float = 0.0
    reach_tolerance: float = 0.006

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f'expert {name} must be a finite value >= 0, got {value!r}')
        for name in ('speed_variation', 'plan_variation'):
            if getattr(self, name) >= 1.0:
                raise ValueError(f'expert {name} must be < 1, got {getattr(self, name)!r}')
        for name in ('max_speed', 'descend_speed', 'push_speed', 'gain', 'noise_time'):
            if getattr(self, name) <= 0.0:
                raise ValueError(f'expert {name} must be > 0, got {getattr(self, name)!r}')
        # The paddle comes down at the approach waypoint: it must not land on the cube, on
        # the shortest plan that plan_variation can draw either.
        shortest = 1.0 - self.plan_variation
        varied = f' (× {shortest:g}: plan_variation {self.plan_variation!r})' \
            if self.plan_variation else ''
        across = CUBE_HALF + PADDLE_HALF_WIDTH + APPROACH_CLEARANCE
        back = CUBE_HALF + PADDLE_HALF_DEPTH + APPROACH_CLEARANCE
        if self.side_offset * shortest < across and self.side_back * shortest < back:
            raise ValueError(f'expert side_offset {self.side_offset!r} and side_back '
                             f'{self.side_back!r}{varied} put the paddle down on the cube: one '
                             f'of them must be at least {across:.3f} / {back:.3f} m')
        if self.lateral_variation > 0.5 * self.realign_lateral:
            raise ValueError(f'expert lateral_variation {self.lateral_variation!r} would start '
                             f'pushes the expert itself counts as slipped off: at most half '
                             f'of realign_lateral, {0.5 * self.realign_lateral:.4f} m')
        if self.behind_offset * shortest < back:
            raise ValueError(f'expert behind_offset {self.behind_offset!r}{varied} starts the '
                             f'push inside the cube: it must be at least {back:.3f} m')

    def varied_plan(self, rng: np.random.Generator) -> ExpertConfig:
        """This config with one episode's draw of the plan_variation factors."""
        if not self.plan_variation:
            return self
        low, high = 1.0 - self.plan_variation, 1.0 + self.plan_variation
        return dataclasses.replace(self, plan_variation=0.0, **{
            name: getattr(self, name) * float(rng.uniform(low, high))
            for name in ('side_offset', 'side_back', 'behind_offset')})


@dataclass
class Observation:
    """What the expert sees: the TCP and the task's ground truth (/sim/task_state)."""

    tcp: np.ndarray
    yaw: float
    task: Mapping[str, Any]

    @classmethod
    def from_pose(cls, pose: Pose, task: Mapping[str, Any]) -> Observation:
        return cls(np.asarray(pose.position, dtype=np.float64), tcp_yaw(pose.orientation), task)


@dataclass
class Command:
    """Velocity the expert wants (base frame), the gripper opening it wants, and its phase."""

    linear: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular: np.ndarray = field(default_factory=lambda: np.zeros(3))
    gripper: float = 1.0
    phase: str = 'idle'
    done: bool = False


def tcp_yaw(quaternion_xyzw: Sequence[float]) -> float:
    """Yaw of the TCP x axis about base z (meaningful while the gripper points down)."""
    x, y, z, w = quat_normalize(quaternion_xyzw)
    return math.atan2(2.0 * (x * y + z * w), 1.0 - 2.0 * (y * y + z * z))


def down_quaternion(yaw: float) -> np.ndarray:
    """Gripper pointing down, TCP x axis at `yaw`: Rz(yaw)·Rx(π) as (x, y, z, w)."""
    return np.array([math.cos(yaw / 2.0), math.sin(yaw / 2.0), 0.0, 0.0])


def wrap_half_turn(angle: float) -> float:
    """The paddle is symmetric: a yaw and yaw ± π push the same way; keep |yaw| ≤ π/2."""
    angle = math.atan2(math.sin(angle), math.cos(angle))
    if angle > math.pi / 2:
        angle -= math.pi
    elif angle < -math.pi / 2:
        angle += math.pi
    return angle


def _angle_diff(a: float, b: float) -> float:
    return math.atan2(math.sin(a - b), math.cos(a - b))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


class PushGeometry:
    """The push plan for one cube/goal pair and side: waypoints recomputed from live positions."""

    def __init__(self, config: ExpertConfig, cube_xy: np.ndarray, goal_xy: np.ndarray,
                 side: int, lateral: float = 0.0) -> None:
        c = self.cube = np.asarray(cube_xy, dtype=np.float64)[:2]
        self.goal = np.asarray(goal_xy, dtype=np.float64)[:2]
        d = self.direction = _unit(self.goal - c)
        n = self.normal = np.array([-d[1], d[0]])
        cfg = config
        self.yaw = wrap_half_turn(math.atan2(d[1], d[0]))
        side_xy = c + side * cfg.side_offset * n - cfg.side_back * d
        behind_xy = c - cfg.behind_offset * d + lateral * n
        self.above_side = np.array([*side_xy, cfg.hover_height])
        self.side_low = np.array([*side_xy, cfg.push_height])
        self.behind = np.array([*behind_xy, cfg.push_height])
        self.above_behind = np.array([*behind_xy, cfg.hover_height])
        contact = CUBE_HALF + PADDLE_HALF_DEPTH
        self.push_end = np.array([*(self.goal - contact * d), cfg.push_height])

    def behind_offset_max(self) -> float:
        return float(np.linalg.norm(self.behind[:2] - self.cube)) + 0.01

    def polyline(self) -> np.ndarray:
        return np.array([self.above_side, self.side_low, self.behind, self.push_end])


def distance_to_polyline(point: np.ndarray, polyline: np.ndarray) -> tuple[float, float]:
    """(distance from point to the polyline, path length remaining after its projection)."""
    best, remaining = math.inf, 0.0
    lengths = [float(np.linalg.norm(b - a)) for a, b in zip(polyline[:-1], polyline[1:])]
    for i, (a, b) in enumerate(zip(polyline[:-1], polyline[1:])):
        ab = b - a
        t = 0.0 if lengths[i] < 1e-9 else float(np.clip((point - a) @ ab / lengths[i] ** 2, 0, 1))
        dist = float(np.linalg.norm(a + t * ab - point))
        if dist < best:
            best, remaining = dist, (1.0 - t) * lengths[i] + sum(lengths[i + 1:])
    return best, remaining


class ScriptedExpert:
    """Phase machine producing velocity commands; one instance per run, `reset` per episode."""

    def __init__(self, config: ExpertConfig | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.config = config or ExpertConfig()
        self.plan = self.config  # this episode's waypoints (config.varied_plan)
        self.lateral = 0.0  # ... and where across the line its push starts
        self.rng = rng or np.random.default_rng()
        self.side = 1
        self.phase = 'idle'
        self.speed_factor = 1.0
        self._noise = np.zeros(3)
        self._yaw = 0.0
        self._realigns = 0
        self._cube_track: deque[tuple[float, np.ndarray]] = deque()
        self.start: np.ndarray | None = None  # TCP where the episode began

    @property
    def side_name(self) -> str:
        return SIDES[self.side]

    @property
    def realigns(self) -> int:
        return self._realigns

    def reset(self, task: Mapping[str, Any], side: int | None = None) -> None:
        """New episode: pick the approach side (random unless given) and a speed factor."""
        self.task = str(task.get('task', 'push'))
        self.side = int(side) if side in (-1, 1) else int(self.rng.choice([-1, 1]))
        v = self.config.speed_variation
        self.speed_factor = float(self.rng.uniform(1.0 - v, 1.0 + v))
        self.plan = self.config.varied_plan(self.rng)
        v = self.config.lateral_variation
        self.lateral = float(self.rng.uniform(-v, v)) if v else 0.0
        self._noise = np.zeros(3)
        self._realigns = 0
        self._cube_track.clear()
        self.start = np.asarray(task['tcp'], dtype=np.float64)[:3] if 'tcp' in task else None
        self.phase = 'above_side' if self.task == 'push' else 'reach'
        if self.task == 'push':
            self._yaw = self.geometry(task).yaw

    def geometry(self, task: Mapping[str, Any]) -> PushGeometry:
        return PushGeometry(self.plan, task['cube'], task['goal'], self.side, self.lateral)

    # --- control -------------------------------------------------------------------------
    def act(self, obs: Observation, dt: float) -> Command:
        if self.task == 'reach':
            return self._act_reach(obs, dt)
        return self._act_push(obs, dt)

    def _servo(self, obs: Observation, goal: np.ndarray, speed: float, dt: float,
               noise_scale: float = 1.0) -> np.ndarray:
        """Velocity toward `goal`: proportional near it, capped at the (varied) phase speed,
        plus smooth human-like noise (Ornstein-Uhlenbeck) that vanishes on arrival."""
        cfg = self.config
        speed *= self.speed_factor
        error = goal - obs.tcp
        dist = float(np.linalg.norm(error))
        velocity = error * min(cfg.gain, speed / dist) if dist > 1e-9 else np.zeros(3)
        theta = dt / cfg.noise_time
        self._noise += -theta * self._noise + math.sqrt(2.0 * theta) * self.rng.standard_normal(3)
        scale = cfg.noise * speed * noise_scale * min(1.0, dist / 0.03)
        return velocity + scale * self._noise

    def _yaw_rate(self, obs: Observation, yaw: float) -> np.ndarray:
        cfg = self.config
        rate = float(np.clip(cfg.yaw_gain * _angle_diff(yaw, obs.yaw), -cfg.max_yaw_rate,
                             cfg.max_yaw_rate))
        return np.array([0.0, 0.0, rate])

    def _arrived(self, obs: Observation, point: np.ndarray) -> bool:
        return float(np.linalg.norm(point - obs.tcp)) < self.config.waypoint_tolerance

    def _act_reach(self, obs: Observation, dt: float) -> Command:
        marker = np.asarray(obs.task['marker'], dtype=np.float64)
        close = float(np.linalg.norm(marker - obs.tcp)) < self.config.reach_tolerance
        if close:
            self.phase = 'done'
        linear = self._servo(obs, marker, self.config.max_speed, dt)
        return Command(linear, self._yaw_rate(obs, 0.0), 1.0, self.phase, self.phase == 'done')

    def _act_push(self, obs: Observation, dt: float) -> Command:
        cfg = self.config
        geo = self.geometry(obs.task)
        cube_xy = geo.cube
        # The paddle keeps facing the live cube→goal direction (steering while pushing).
        if self.phase != 'retreat':
            self._yaw = geo.yaw
        phase = self.phase
        linear = np.zeros(3)
        if phase == 'above_side':
            linear = self._servo(obs, geo.above_side, cfg.max_speed, dt)
            if self._arrived(obs, geo.above_side):
                self.phase = 'descend'
        elif phase == 'descend':
            linear = self._servo(obs, geo.side_low, cfg.descend_speed, dt)
            if self._arrived(obs, geo.side_low):
                self.phase = 'behind'
        elif phase == 'behind':
            linear = self._servo(obs, geo.behind, cfg.descend_speed, dt, noise_scale=0.5)
            if self._arrived(obs, geo.behind):
                self.phase = 'push'
        elif phase == 'push':
            linear, status = self._push_velocity(obs, geo, dt)
            if status == 'at_goal':
                self.phase = 'retreat'
            elif status == 'lost':
                self._realigns += 1
                self.phase = 'lift'
        elif phase == 'lift':
            up = np.array([obs.tcp[0], obs.tcp[1], cfg.hover_height])
            linear = self._servo(obs, up, cfg.descend_speed, dt, noise_scale=0.3)
            if obs.tcp[2] > cfg.hover_height - cfg.waypoint_tolerance:
                self.phase = 'above_behind'
        elif phase == 'above_behind':
            linear = self._servo(obs, geo.above_behind, cfg.max_speed, dt)
            if self._arrived(obs, geo.above_behind):
                self.phase = 'down'
        elif phase == 'down':
            linear = self._servo(obs, geo.behind, cfg.descend_speed, dt, noise_scale=0.3)
            if self._arrived(obs, geo.behind):
                self.phase = 'push'
        elif phase == 'retreat':
            up = np.array([obs.tcp[0] - 0.03 * geo.direction[0],
                           obs.tcp[1] - 0.03 * geo.direction[1], cfg.retreat_height])
            linear = self._servo(obs, up, cfg.descend_speed, dt, noise_scale=0.3)
            if obs.tcp[2] > cfg.retreat_height - cfg.waypoint_tolerance:
                self.phase = 'done'
        return Command(linear, self._yaw_rate(obs, self._yaw), 0.0, self.phase,
                       self.phase == 'done')

    def _push_velocity(self, obs: Observation, geo: PushGeometry, dt: float
                       ) -> tuple[np.ndarray, str]:
        """Push along the live cube→goal line, steering the paddle back onto it."""
        cfg = self.config
        remaining = float(np.linalg.norm(geo.goal - geo.cube))
        if remaining < cfg.goal_tolerance:
            return np.zeros(3), 'at_goal'
        rel = obs.tcp[:2] - geo.cube
        along = float(rel @ geo.direction)   # about -(half cube + paddle) when in contact
        lateral = float(rel @ geo.normal)
        if abs(lateral) > cfg.realign_lateral or along > -CUBE_HALF:
            return np.zeros(3), 'lost'
        speed = cfg.push_speed * self.speed_factor * min(1.0, remaining / 0.03 + 0.2)
        velocity = np.zeros(3)
        velocity[:2] = speed * geo.direction - cfg.gain * lateral * geo.normal
        velocity[2] = cfg.gain * (cfg.push_height - obs.tcp[2])
        theta = dt / cfg.noise_time
        self._noise += -theta * self._noise + math.sqrt(2.0 * theta) * self.rng.standard_normal(3)
        velocity += 0.3 * cfg.noise * speed * self._noise
        return velocity, 'pushing'

    def resume(self, obs: Observation) -> None:
        """Take over mid-episode (correction mode): keep the side whose plan the arm is
        nearer; push on if the paddle is behind the cube and on its line; back off onto the
        line at push height if it is behind but off centre (the paddle leaves the cube's back
        face as it backs away, so a person re-centres in about a second instead of lifting
        and re-approaching, and the correction shows the policy the recovery from the very
        state it drifted into); else lift and re-approach."""
        if self.task == 'reach':
            self.phase = 'reach'
            return
        best = math.inf
        for side in (-1, 1):
            geo = PushGeometry(self.plan, obs.task['cube'], obs.task['goal'], side,
                               self.lateral)
            dist, _ = distance_to_polyline(obs.tcp, geo.polyline())
            if dist < best:
                best, self.side = dist, side
        geo = self.geometry(obs.task)
        rel = obs.tcp[:2] - geo.cube
        low = obs.tcp[2] < self.config.push_height + 0.02
        behind = low and -geo.behind_offset_max() < float(rel @ geo.direction) < -CUBE_HALF
        lateral = abs(float(rel @ geo.normal))
        if behind and lateral < 0.5 * self.config.realign_lateral:
            self.phase = 'push'
        elif behind and lateral < self.config.realign_lateral:
            self.phase = 'behind'
        else:
            self.phase = 'lift'

    # --- plan monitoring (correction mode) -----------------------------------------------
    def push_offset(self, obs: Observation, now: float) -> float:
        """How far across the live push line the paddle is while the cube moves (m): 0 unless
        the cube has moved at PUSH_SPEED over the last PUSH_WINDOW with the paddle low within
        reach of it, and the cube is still CONTACT_GOAL_CLEARANCE from the goal (nearer, the
        line is too short to judge). A person takes over as a push runs off centre, before
        the cube has gone off at an angle. Call once per tick: it keeps the cube's track."""
        if self.task != 'push':
            return 0.0
        cube = np.asarray(obs.task['cube'], dtype=np.float64)[:2]
        seen = self._cube_track
        seen.append((now, cube))
        while len(seen) > 1 and now - seen[1][0] >= PUSH_WINDOW:
            seen.popleft()
        then, before = seen[0]
        moving = now - then >= 0.5 * PUSH_WINDOW and \
            float(np.linalg.norm(cube - before)) >= PUSH_SPEED * (now - then)
        if not moving or obs.tcp[2] > self.config.push_height + CONTACT_MARGIN:
            return 0.0
        geo = PushGeometry(self.plan, cube, obs.task['goal'], self.side)
        if float(np.linalg.norm(geo.goal - cube)) < CONTACT_GOAL_CLEARANCE:
            return 0.0
        rel = obs.tcp[:2] - cube
        if float(rel @ geo.direction) < -(CUBE_HALF + PADDLE_HALF_DEPTH + CONTACT_MARGIN):
            return 0.0  # the paddle is not what moves it
        return abs(float(rel @ geo.normal))

    def plan_deviation(self, obs: Observation) -> tuple[float, float]:
        """(distance from the TCP to the nearest plan, progress potential). Both sides count
        as on plan, so a policy that learned the other mode is not 'corrected'. The potential
        (remaining plan length + cube-to-goal distance) falls as the task advances. The plan
        starts where the episode began (home after a reset), so the approach from there to
        the first waypoint is on plan too."""
        if self.task == 'reach':
            marker = np.asarray(obs.task['marker'], dtype=np.float64)
            dist = float(np.linalg.norm(marker - obs.tcp))
            return 0.0, dist
        best = (math.inf, math.inf)
        for side in (-1, 1):
            geo = PushGeometry(self.plan, obs.task['cube'], obs.task['goal'], side,
                               self.lateral)
            line = geo.polyline() if self.start is None else np.vstack([self.start,
                                                                        geo.polyline()])
            dist, remaining = distance_to_polyline(obs.tcp, line)
            if dist < best[0]:
                best = (dist, remaining)
        cube_to_goal = float(np.linalg.norm(np.asarray(obs.task['goal'])[:2]
                                            - np.asarray(obs.task['cube'])[:2]))
        return best[0], best[1] + cube_to_goal


class TargetIntegrator:
    """Integrates velocity commands into a target pose (what direct mode publishes and what a
    teleop node does with a SpaceMouse twist), kept inside a workspace box and within
    `max_lead` of the measured TCP so a blocked arm never winds the target up."""

    def __init__(self, start: Pose, low: Sequence[float] = (0.20, -0.40, 0.0),
                 high: Sequence[float] = (0.80, 0.40, 0.60), max_lead: float = 0.05) -> None:
        self.position = np.asarray(start.position, dtype=np.float64).copy()
        self.orientation = quat_normalize(start.orientation)
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self.max_lead = max_lead

    def step(self, command: Command, dt: float, tcp: np.ndarray) -> Pose:
        position = self.position + np.asarray(command.linear) * dt
        lead = position - tcp
        norm = float(np.linalg.norm(lead))
        if norm > self.max_lead:
            position = tcp + lead * (self.max_lead / norm)
        self.position = np.clip(position, self.low, self.high)
        rotation = rotvec_to_quat(np.asarray(command.angular) * dt)
        self.orientation = quat_normalize(quat_multiply(rotation, self.orientation))
        return Pose(self.position.copy(), self.orientation.copy())


@dataclass
class CorrectionConfig:
    """When the watching expert takes over (pedal down) and when it hands back."""

    off_plan_threshold: float = 0.08   # m from the nearest plan
    stall_time: float = 4.0            # s without `min_progress` of the progress potential
    min_progress: float = 0.01         # m
    min_correction_time: float = 1.5   # s the expert keeps the pedal down at least
    release_distance: float = 0.03     # m: back this close to the plan before releasing
    # m: take over when the paddle pushes the cube further than this off its centre line
    # (ScriptedExpert.push_offset); such a takeover lasts until the expert pushes on the line
    push_lateral: float = 0.02

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f'correction {name} must be a finite value > 0, got {value!r}')


class CorrectionMonitor:
    """Watches plan deviation and progress; says when to press and release the pedal.

    Pure: times are whatever clock the caller uses (sim time in the node)."""

    def __init__(self, config: CorrectionConfig | None = None) -> None:
        self.config = config or CorrectionConfig()
        self.reset(0.0)

    def reset(self, now: float) -> None:
        self.correcting = False
        self.reason = ''
        self.interventions = 0
        self._until_pushing = False
        self._best = math.inf
        self._progress_time = now
        self._since = now

    def _progress(self, now: float, potential: float) -> None:
        if potential < self._best - self.config.min_progress:
            self._best = potential
            self._progress_time = now

    def update(self, now: float, deviation: float, potential: float, success: bool,
               push_offset: float = 0.0, pushing: bool = True) -> bool:
        """True while the expert should hold the pedal and drive. `push_offset`: how far off
        the cube's centre line the paddle pushes it (ScriptedExpert.push_offset); `pushing`:
        the expert is pushing on the line (what ends an off-centre takeover)."""
        cfg = self.config
        self._progress(now, potential)
        if not self.correcting:
            if success:
                return False
            self._until_pushing = push_offset > cfg.push_lateral
            if self._until_pushing:
                self.reason = f'pushing the cube {push_offset:.3f} m off its centre line'
            elif deviation > cfg.off_plan_threshold:
                self.reason = f'off plan by {deviation:.3f} m'
            elif now - self._progress_time > cfg.stall_time:
                self.reason = f'no progress for {now - self._progress_time:.1f} s'
            else:
                return False
            self.correcting = True
            self.interventions += 1
            self._since = now
            self._best, self._progress_time = potential, now
            return True
        held = now - self._since
        if success or (held >= cfg.min_correction_time and deviation < cfg.release_distance
                       and now - self._progress_time < 0.5 * cfg.stall_time
                       and (pushing or not self._until_pushing)):
            self.correcting = False
            self.reason = ''
            self._best, self._progress_time = potential, now
        return self.correcting


class JoyButtons:
    """SpaceMouse/pedal buttons as a driver reports them: a press is held for a few messages
    (a human press lasts ~0.1 s), the pedal is held as long as asked. Layout [gripper, episode,
    pedal]."""

    GRIPPER, EPISODE, PEDAL = 0, 1, 2

    def __init__(self, press_ticks: int = 4) -> None:
        self.press_ticks = press_ticks
        self._remaining = [0, 0]
        self.pedal = False

    def press(self, button: int) -> None:
        self._remaining[button] = self.press_ticks

    def pressing(self, button: int) -> bool:
        return self._remaining[button] > 0

    def tick(self) -> list[int]:
        """Button states for the next Joy message."""
        buttons = [1 if r > 0 else 0 for r in self._remaining] + [1 if self.pedal else 0]
        self._remaining = [max(0, r - 1) for r in self._remaining]
        return buttons


class RecordingHandshake:
    """teleop mode: the expert presses the episode button and then waits until the teleop node
    reports the wanted recording state (/bc/episode/state), plus `grace` after a stop, before
    it drives or resets, as a person watching the REC light would. A press the node missed
    (best-effort Joy on a loaded machine) is pressed again after `repress_after`; after
    `give_up` it goes on anyway. With no state ever heard (no teleop node) it never waits."""

    def __init__(self, buttons: JoyButtons, grace: float = 0.5, repress_after: float = 2.0,
                 give_up: float = 5.0) -> None:
        self.buttons = buttons
        self.grace, self.repress_after, self.give_up = grace, repress_after, give_up
        self.recording: bool | None = None
        self._pressed_at = 0.0
        self._since: float | None = None

    def press(self, now: float) -> None:
        self.buttons.press(JoyButtons.EPISODE)
        self._pressed_at, self._since = now, None

    def poll(self, wanted: bool, now: float) -> tuple[bool, str | None]:
        """(done, note): done once the state is `wanted`; note says when it pressed again
        or gave up."""
        if self.buttons.pressing(JoyButtons.EPISODE):
            return False, None
        if self.recording is None:
            return True, None
        if self._since is None:
            self._since = now
        if self.recording == wanted:
            return wanted or now - self._pressed_at >= self.grace, None
        if now - self._since > self.give_up:
            return True, f'the teleop node did not {"start" if wanted else "stop"} recording'
        if now - self._pressed_at > self.repress_after:
            self.buttons.press(JoyButtons.EPISODE)  # the give-up clock keeps running
            self._pressed_at = now
            return False, 'episode button press missed; pressing again'
        return False, None


def spacenav_axes(command: Command, linear_scale: float, angular_scale: float) -> list[float]:
    """Velocity command → normalized SpaceMouse axes [lx, ly, lz, ax, ay, az] in [-1, 1]."""
    axes = np.concatenate([np.asarray(command.linear) / linear_scale,
                           np.asarray(command.angular) / angular_scale])
    return [float(v) for v in np.clip(axes, -1.0, 1.0)]
