"""Closed-loop evaluation of an exported policy folder in-process: no ROS, no wall clock.

The deploy graph (`bc_robot.orchestrate.evaluate`) is the reference, but it runs in real
time; this runs the same pieces back to back, faster than real time, to score a model in
seconds: `SimWorld` physics, the sim_arm cameras (same renderer, same 320x240 size),
`core.preprocess.preprocess_image` and `core.state.build_state_vector` as observation_node
calls them, `OnnxBackend` as the policy node loads it, `ActionLayout.to_target` for each
action and `BridgeCore` (safety gate + interpolation at the bridge's output rate) between
the policy and the arm. Success is `SimWorld.task_state()`, the payload sim_arm publishes.

Two ways to turn chunks into actions:
- `executor: None` (default): synchronous, sim time stops during inference (a zero-latency
  policy); every `execute_steps` actions it re-plans from a fresh observation.
- `executor: sync|ensemble|async|rtc`: the policy node's own executor (`core.chunking`,
  configured from policy_node's parameter defaults) on a virtual clock. An inference that
  starts at tick k sees the observation of tick k and its chunk arrives `delay_s` sim
  seconds later, while the executor keeps stepping (or stalls, for `sync`) — the real-time
  chunking experiment without wall-clock noise, deterministic per seed, and ~10x faster
  than the deploy graph. What it leaves out (camera frame age, DDS, a loaded CPU) is what
  `bench/e2e.py` on the deploy graph measures.

`object_bias_m` / `object_noise_m` give a policy that reads the simulator's cube and goal
(`sim_objects`) the errors a camera front end would make instead (`ObjectError`): how
precise perception must be before such a policy keeps its score.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bc_robot.core.actions import ActionLayout
from bc_robot.core.bridge import POLICY, BridgeCore
from bc_robot.core.bridge_settings import BRIDGE_SCHEMA, config_from_params, limits_from_params
from bc_robot.core.chunking import EXECUTORS, ChunkExecutor, make_executor
from bc_robot.core.delay import DelayEstimator
from bc_robot.core.gate import GateLimits
from bc_robot.core.policy_settings import (OBSERVATION_SCHEMA, POLICY_SCHEMA, delay_config,
                                           executor_config)
from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.spec import (IMAGE_INPUT_PREFIX, NOISE_INPUT, PREFIX_INPUT,
                                PREFIX_WEIGHTS_INPUT, STATE_INPUT)
from bc_robot.core.state import build_state_vector, gripper_opening
from bc_robot.core.sync import ObservationHistory
from bc_robot.runtime.onnx_backend import OnnxBackend
from bc_robot.sim.camera import CameraRig
from bc_robot.sim.settings import SIM_ARM_SCHEMA, sim_config_from_params
from bc_robot.sim.tasks import PushContactProbe
from bc_robot.sim.world import SimWorld

logger = logging.getLogger(__name__)


@dataclass
class RolloutConfig:
    """episodes use scene seeds seed, seed+1, …; the recorded demos use seeds >= 1000, so
    the default seeds are scenes the policy never saw. execute_steps None = chunk // 2."""

    episodes: int = 10
    seed: int = 0
    timeout_s: float = 30.0          # sim seconds per episode
    execute_steps: int | None = None
    threads: int = 1                 # ONNX Runtime intra-op threads
    executor: str | None = None      # None: synchronous re-planning; else a policy executor
    delay_s: float = 0.0             # executor: observation → chunk available (sim seconds)
    # sim_objects policies: perception error on the cube and goal positions they read (m);
    # the task's success is still judged on the true positions (ObjectError)
    object_bias_m: float = 0.0       # σ of an offset drawn once per episode
    object_noise_m: float = 0.0      # σ of a fresh offset at every observation

    def __post_init__(self) -> None:
        for name in ('episodes', 'threads'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f'seed must be an int >= 0, got {self.seed!r}')
        if not isinstance(self.timeout_s, (int, float)) or not math.isfinite(self.timeout_s) \
                or self.timeout_s <= 0:
            raise ValueError(f'timeout_s must be a finite number of seconds > 0, got '
                             f'{self.timeout_s!r}')
        if self.execute_steps is not None and (not isinstance(self.execute_steps, int)
                                               or self.execute_steps < 1):
            raise ValueError(f'execute_steps must be an int >= 1 (or None), got '
                             f'{self.execute_steps!r}')
        if self.executor is not None and self.executor not in EXECUTORS:
            raise ValueError(f'executor {self.executor!r} is not one of {", ".join(EXECUTORS)}')
        if not isinstance(self.delay_s, (int, float)) or not math.isfinite(self.delay_s) \
                or not 0.0 <= self.delay_s <= 5.0:
            raise ValueError(f'delay_s must be in [0, 5] sim seconds, got {self.delay_s!r}')
        if self.delay_s > 0 and self.executor is None:
            raise ValueError(f'delay_s {self.delay_s} needs an executor (sync, ensemble, '
                             f'async or rtc)')
        for name in ('object_bias_m', 'object_noise_m'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or not 0.0 <= value <= 0.5:
                raise ValueError(f'{name} must be in [0, 0.5] m, got {value!r}')

    @property
    def perturbs_objects(self) -> bool:
        return bool(self.object_bias_m or self.object_noise_m)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.episodes)]


class ObjectError:
    """What a camera front end would hand a `sim_objects` policy instead of the truth: cube
    x, y and goal x, y off by an offset drawn once per episode (σ `bias_m`: a calibration or
    a layout it reads wrong) plus a fresh one per observation (σ `noise_m`); the cube's
    height is the table's, which such a front end knows. Seeded per episode on a stream of
    its own, so the policy's sampling noise and a seed's replay are unchanged."""

    def __init__(self, bias_m: float, noise_m: float, seed: int) -> None:
        self.rng = np.random.default_rng((seed, 1))
        self.noise_m = noise_m
        self.bias = self._planar(bias_m)

    def _planar(self, sigma: float) -> np.ndarray:
        cube, goal = self.rng.normal(0.0, sigma, 2), self.rng.normal(0.0, sigma, 2)
        return np.r_[cube, 0.0, goal]

    def apply(self, objects: np.ndarray) -> np.ndarray:
        """objects: cube x, y, z and goal x, y (the simulator's, m)."""
        return objects + self.bias + self._planar(self.noise_m)


@dataclass
class RolloutResult:
    seed: int
    success: bool
    time_to_success: float | None   # sim seconds from reset, None when never reached
    duration: float                 # sim seconds run (success or timeout)
    final_distance: float           # task distance (m) at the end
    chunks: int                     # inferences
    wall_s: float
    error: str = ''                 # a chunk the policy node would refuse ends the episode
    idle_ticks: int = 0             # control ticks without an action (the arm held)
    max_step_m: float = 0.0         # largest position change between consecutive actions
    max_boundary_step_m: float = 0.0  # ... on the first action of a new chunk
    typical_step_m: float = 0.0     # median change between actions of the same chunk
    # push: TCP offset across the cube→goal line when the cube first moved 5 mm (m, + = left)
    # and the cube's heading against that line after 3 cm (degrees); None when it never did
    contact_lateral_m: float | None = None
    push_heading_deg: float | None = None
    # the smallest task distance (m) of the episode: a failure that came this close and
    # ended far (final_distance) went through the goal; one that never came close did not
    closest_distance: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class PolicyRollout:
    """One model folder on the sim push task. Create, `run()` (or `run_episode(seed)`),
    `close()` on the same thread: the camera GL contexts belong to it."""

    def __init__(self, model_dir: str | Path, config: RolloutConfig | None = None,
                 limits: GateLimits | None = None) -> None:
        self.config = config or RolloutConfig()
        sim = SIM_ARM_SCHEMA.defaults()          # what sim_arm runs with, task push
        obs = OBSERVATION_SCHEMA.defaults()
        self.finger_travel = float(obs['finger_travel'])
        bridge = BRIDGE_SCHEMA.defaults()
        self.limits = limits or limits_from_params(bridge)
        self.bridge_config = config_from_params(bridge)
        self.backend = OnnxBackend(model_dir, providers='cpu', cameras=sim['cameras'],
                                   warmup=1, threads=self.config.threads)
        spec = self.spec = self.backend.spec
        self.layout = ActionLayout(spec.action_representation)
        self.execute_steps = self.config.execute_steps or max(1, spec.chunk_length // 2)
        if self.execute_steps > spec.chunk_length:
            raise ValueError(f'execute_steps {self.execute_steps} exceeds the policy\'s '
                             f'chunk_length {spec.chunk_length}')
        size = (int(sim['image_height']), int(sim['image_width']))
        for camera in spec.cameras:  # a crop that does not fit the sim frame: refuse now
            preprocess_image(np.zeros((*size, 3), dtype=np.uint8), camera)
        self.world = SimWorld(sim_config_from_params(sim))
        timestep = self.world.timestep
        self.control_steps = max(1, round(1.0 / (spec.control_rate_hz * timestep)))
        self.bridge_steps = max(1, round(1.0 / (self.limits.output_rate_hz * timestep)))
        if abs(self.control_steps * timestep * spec.control_rate_hz - 1.0) > 1e-6:
            logger.warning('control rate %g Hz is not a whole number of %g ms physics steps: '
                           'running at %g Hz', spec.control_rate_hz, 1e3 * timestep,
                           1.0 / (self.control_steps * timestep))
        self.rig = CameraRig(self.world.arm.model, [c.name for c in spec.cameras],
                             size[1], size[0], int(sim['render_samples'])) if spec.cameras else None
        if self.config.perturbs_objects and 'sim_objects' not in spec.state_keys:
            self.close()
            raise ValueError(f'object_bias_m / object_noise_m perturb the sim_objects state key, '
                             f'which {model_dir} does not read (state keys: '
                             f'{list(spec.state_keys)})')
        self.object_error = ObjectError(0.0, 0.0, 0)

    def __enter__(self) -> PolicyRollout:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self.rig is not None:
            self.rig.close()
            self.rig = None
        self.backend.close()

    def _observe(self) -> dict[str, np.ndarray]:
        """The parts observation_node would publish for this instant."""
        parts = {}
        if self.rig is not None:
            self.rig.capture(self.world.arm.data)
            frames = self.rig.render()
            for camera in self.spec.cameras:
                parts[IMAGE_INPUT_PREFIX + camera.name] = preprocess_image(frames[camera.name],
                                                                           camera)
        if self.spec.state_keys:
            arm = self.world.arm
            joints, n = arm.joint_positions(), len(arm.arm_qpos)  # /joint_states order
            parts[STATE_INPUT] = build_state_vector(
                self.spec.state_keys, arm.tcp_pose(),
                gripper_opening(joints[n:], self.finger_travel), joints[:n],
                self.object_error.apply(np.r_[arm.cube_position(), arm.goal_position()[:2]])
                if 'sim_objects' in self.spec.state_keys else None)
        return parts

    def _plan(self, inputs: dict[str, np.ndarray], rng: np.random.Generator,
              prefix: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """One chunk, with the executor's prefix (all-zero weights when it has none), the
        noise drawn from the episode's generator so a seed always replays the same way."""
        feed = dict(inputs)
        spec, length = self.spec, self.spec.chunk_length
        if spec.accepts_prefix:
            feed[PREFIX_INPUT], feed[PREFIX_WEIGHTS_INPUT] = prefix or (
                np.zeros((length, self.layout.dim), dtype=np.float32),
                np.zeros(length, dtype=np.float32))
        if spec.input_named(NOISE_INPUT) is not None:
            feed[NOISE_INPUT] = rng.standard_normal((length, self.layout.dim)).astype(np.float32)
        return self.layout.validate_chunk(self.backend.infer(feed), length)

    def _executor(self) -> ChunkExecutor:
        """The policy node's executor with its parameter defaults (chunk length, horizon,
        delay margin and estimator as deployed)."""
        params = {**POLICY_SCHEMA.defaults(), 'executor': self.config.executor}
        return make_executor(executor_config(params, self.spec), self.layout,
                             DelayEstimator(delay_config(params)), self.control_steps *
                             self.world.timestep, self.spec.accepts_prefix)

    def run_episode(self, seed: int) -> RolloutResult:
        began = time.perf_counter()
        world, dt = self.world, self.world.timestep
        period = self.control_steps * dt
        world.set_seed(seed)
        world.reset()
        self.object_error = ObjectError(self.config.object_bias_m, self.config.object_noise_m,
                                        seed)
        bridge = BridgeCore(self.limits, self.bridge_config)
        history = ObservationHistory(self.spec.history, period)
        source = (_ExecutorSource(self._executor(), self.config.delay_s, period)
                  if self.config.executor else _ReplanSource(self.execute_steps))
        rng = np.random.default_rng(seed)
        step = tick = 0
        error = ''
        state = world.task_state()
        closest = float(state['distance'])
        probe = PushContactProbe(np.array(state['cube']), np.array(state['goal']))
        while not state['success'] and step * dt < self.config.timeout_s - 1e-9:
            now = step * dt  # episode time: the bridge sees the same clock in every episode

            def plan(prefix: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
                if self.spec.history == 1:
                    history.add(now, self._observe())
                return self._plan(history.wait_newer(None, 0.0)[1], rng, prefix)

            if self.spec.history > 1:
                history.add(now, self._observe())
            try:
                action = source.action(tick, plan)
                target = None if action is None else self.layout.to_target(
                    action, world.tcp_pose().orientation if self.layout.uses_axial else None)
            except ValueError as exc:
                error = f'policy output refused: {exc}'
                logger.error('seed %d: %s', seed, error)
                break
            if target is not None:
                pose, gripper = target
                bridge.on_target(POLICY, pose.position, pose.orientation, now, now)
                bridge.on_gripper(POLICY, gripper, now)
            for _ in range(self.control_steps):
                if step % self.bridge_steps == 0:
                    measured = world.tcp_pose()  # what sim_arm's /current_pose carries
                    bridge.on_measured(measured.position, measured.orientation, step * dt)
                    out = bridge.tick(step * dt)
                    if out.pose is not None:
                        world.set_target(out.pose)
                    if out.gripper is not None:
                        world.set_gripper(out.gripper)
                world.step(1)
                step += 1
            tick += 1
            state = world.task_state()
            closest = min(closest, float(state['distance']))
            probe.update(np.array(state['tcp']), np.array(state['cube']))  # read once, above
        history.close()
        success = bool(state['success'])
        result = RolloutResult(seed, success, round(step * dt, 3) if success else None,
                               round(step * dt, 3), round(float(state['distance']), 4),
                               source.chunks, round(time.perf_counter() - began, 3), error,
                               source.idle_ticks,
                               *(round(v, 5) for v in source.step_figures()),
                               _rounded(probe.contact_lateral_m, 4),
                               _rounded(probe.heading_deg, 1),
                               closest_distance=round(closest, 4))
        logger.info('seed %d: %s after %.2f s sim (%.1f s wall, %d chunks, %.3f m)', seed,
                    'success' if success else 'FAILED', result.duration, result.wall_s,
                    source.chunks, result.final_distance)
        return result

    def run(self) -> list[RolloutResult]:
        return [self.run_episode(seed) for seed in self.config.seeds]


class _ActionSource:
    """Where each control tick's action comes from; counts what the executors are judged by."""

    def __init__(self) -> None:
        self.chunks = 0
        self.idle_ticks = 0        # after the first action: the start-up wait is not a stall
        self.boundary_steps: list[float] = []
        self.inner_steps: list[float] = []
        self._last: np.ndarray | None = None

    def _emit(self, action: np.ndarray | None, new_chunk: bool) -> np.ndarray | None:
        if action is None:
            self.idle_ticks += self._last is not None
            return None
        if self._last is not None:
            step = float(np.linalg.norm(action[:3] - self._last[:3]))
            (self.boundary_steps if new_chunk else self.inner_steps).append(step)
        self._last = action
        return action

    def step_figures(self) -> tuple[float, float, float]:
        """(largest step, largest boundary step, median step inside chunks) in metres."""
        every = self.boundary_steps + self.inner_steps
        return (max(every, default=0.0), max(self.boundary_steps, default=0.0),
                float(np.median(self.inner_steps)) if self.inner_steps else 0.0)


class _ReplanSource(_ActionSource):
    """Synchronous: plan, run `execute_steps` actions, plan again (sim time stops while
    the policy runs)."""

    def __init__(self, execute_steps: int) -> None:
        super().__init__()
        self.execute_steps = execute_steps
        self._queue: list[np.ndarray] = []

    def action(self, tick: int, plan) -> np.ndarray | None:
        new_chunk = not self._queue
        if new_chunk:
            self._queue = list(plan()[:self.execute_steps])
            self.chunks += 1
        return self._emit(self._queue.pop(0), new_chunk)


class _ExecutorSource(_ActionSource):
    """A policy executor on a virtual clock: an inference requested at tick k uses tick k's
    observation and delivers `delay_s` later (at least the next tick, as in the node)."""

    def __init__(self, executor: ChunkExecutor, delay_s: float, period: float) -> None:
        super().__init__()
        self.executor, self.delay_s, self.period = executor, delay_s, period
        self.delay_ticks = max(1, math.ceil(delay_s / period - 1e-9))
        self._pending: tuple[int, int, np.ndarray] | None = None  # (ready, start, chunk)

    def action(self, tick: int, plan) -> np.ndarray | None:
        executor = self.executor
        if self._pending is not None and self._pending[0] <= tick:
            _, start, chunk = self._pending
            self._pending = None
            executor.deliver(chunk, start, tick, self.delay_s, (tick - start) * self.period)
        action = executor.step(tick)
        action = self._emit(action, executor.started_chunk is not None)
        if self._pending is None and executor.wants_inference(tick):
            chunk = plan(executor.prefix_for(tick))
            self._pending = (tick + self.delay_ticks, tick, chunk)
            self.chunks += 1
        return action


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summarize(results: list[RolloutResult]) -> dict:
    n = len(results)
    successes = sum(r.success for r in results)
    return {'episodes': n, 'successes': successes, 'rate': successes / n if n else 0.0,
            'seeds': [r.seed for r in results],
            'wall_s_per_episode': sum(r.wall_s for r in results) / n if n else 0.0,
            'results': [r.as_dict() for r in results]}


def evaluate_model(model_dir: str | Path, config: RolloutConfig | None = None) -> dict:
    """Run every configured seed on a model folder and return the summary."""
    with PolicyRollout(model_dir, config) as rollout:
        summary = summarize(rollout.run())
    summary['model'] = str(model_dir)
    return summary
