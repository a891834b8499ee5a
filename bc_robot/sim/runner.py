"""In-process episode runner: the sim world and the scripted expert without ROS, rendering or
wall-clock pacing, so many seeded episodes run faster than real time (tests, evaluation,
the expert's self-check). The sim_expert node drives the same `ScriptedExpert` and
`TargetIntegrator` over topics; only the transport differs.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from bc_robot.core.pose import Pose
from bc_robot.sim.expert import (Command, ExpertConfig, Observation, ScriptedExpert,
                                 TargetIntegrator)
from bc_robot.sim.world import SimWorld

logger = logging.getLogger(__name__)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    side: str
    duration: float       # sim seconds until the expert finished (or the timeout)
    final_distance: float
    realigns: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunnerConfig:
    control_rate: float = 50.0     # Hz at which the expert acts (a SpaceMouse driver's rate)
    timeout: float = 30.0          # sim seconds per episode
    settle_time: float = 0.3       # sim seconds of holding after the expert says done

    def __post_init__(self) -> None:
        if not (math.isfinite(self.control_rate) and 1.0 <= self.control_rate <= 1000.0):
            raise ValueError(f'control_rate must be in [1, 1000] Hz, got {self.control_rate!r}')
        if not (math.isfinite(self.timeout) and self.timeout > 0.0):
            raise ValueError(f'timeout must be > 0 s, got {self.timeout!r}')
        if not (math.isfinite(self.settle_time) and self.settle_time >= 0.0):
            raise ValueError(f'settle_time must be >= 0 s, got {self.settle_time!r}')


class ExpertEpisode:
    """One expert episode, transport-agnostic: feed it the measured TCP pose and task state
    at the control rate, get the target pose (direct mode) and the velocity command (teleop
    mode); it decides when the episode is over and what the outcome was. The sim_expert node
    and `run_episode` both drive this class."""

    def __init__(self, expert: ScriptedExpert, config: RunnerConfig, task_state: dict,
                 tcp: Pose, side: int | None = None) -> None:
        self.expert, self.config = expert, config
        self.state = task_state
        self.start = float(task_state['time'])
        expert.reset(task_state, side)
        self.integrator = TargetIntegrator(tcp)
        self.finished_at: float | None = None
        self.over = False

    def tick(self, tcp: Pose, task_state: dict, dt: float) -> tuple[Pose, Command]:
        self.state = task_state
        now = float(task_state['time'])
        command = self.expert.act(Observation.from_pose(tcp, task_state), dt)
        target = self.integrator.step(command, dt, tcp.position)
        if command.done and self.finished_at is None:
            self.finished_at = now
        if (self.finished_at is not None and now - self.finished_at >= self.config.settle_time) \
                or now - self.start >= self.config.timeout:
            self.over = True
        return target, command

    def result(self) -> EpisodeResult:
        s = self.state
        end = self.finished_at if self.finished_at is not None else float(s['time'])
        result = EpisodeResult(int(s['episode']), int(s['seed']), bool(s['success']),
                               self.expert.side_name, round(end - self.start, 3),
                               round(float(s['distance']), 4), self.expert.realigns)
        logger.info('episode %d seed %d: %s (%s side, %.1f s, %.3f m)', result.episode,
                    result.seed, 'success' if result.success else 'FAILED', result.side,
                    result.duration, result.final_distance)
        return result


def run_episode(world: SimWorld, expert: ScriptedExpert, config: RunnerConfig | None = None,
                side: int | None = None,
                watch: Callable[[Pose, dict], None] | None = None) -> EpisodeResult:
    """Reset the world, let the expert solve it (direct mode), report the outcome. `watch`
    sees the measured TCP pose and task state of every control tick before the expert acts."""
    config = config or RunnerConfig()
    episode = ExpertEpisode(expert, config, world.reset(), world.tcp_pose(), side)
    steps = max(1, int(round(1.0 / (config.control_rate * world.timestep))))
    dt = steps * world.timestep
    while not episode.over:
        tcp, state = world.tcp_pose(), world.task_state()
        if watch is not None:
            watch(tcp, state)
        target, command = episode.tick(tcp, state, dt)
        world.set_target(target)
        world.set_gripper(command.gripper)
        world.step(steps)
    episode.state = world.task_state()
    return episode.result()


def run_episodes(world: SimWorld, count: int, expert_config: ExpertConfig | None = None,
                 runner_config: RunnerConfig | None = None, expert_seed: int = 0
                 ) -> list[EpisodeResult]:
    """`count` episodes from the world's current seed; the expert's randomness (side, speed,
    noise) comes from `expert_seed`, so the whole run is reproducible."""
    expert = ScriptedExpert(expert_config, np.random.default_rng(expert_seed))
    return [run_episode(world, expert, runner_config) for _ in range(count)]


def summarize(results: list[EpisodeResult]) -> dict:
    """Success rate, sides used and per-episode results (the expert's JSON summary)."""
    n = len(results)
    sides = sorted({r.side for r in results})
    return {
        'episodes': n,
        'successes': sum(r.success for r in results),
        'success_rate': (sum(r.success for r in results) / n) if n else 0.0,
        'sides': {s: sum(r.side == s for r in results) for s in sides},
        'results': [r.as_dict() for r in results],
    }
