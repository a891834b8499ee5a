"""Evaluate a policy artifact on the full deploy graph (`sim:=true`): seeded episodes, success
from `/sim/task_state`, latency and chunking figures from the policy node's exit dump,
interventions from `/bc/intervention` (and, when recorded, the episode.json files)."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bc_robot.core.chunking import EXECUTORS
from bc_robot.orchestrate.episodes import EpisodeDriver, EpisodeSettings
from bc_robot.orchestrate.graphs import GraphRun
from bc_robot.orchestrate.ros import RosLink
from bc_robot.orchestrate.stats import (EpisodeOutcome, chunking_summary, latency_summary,
                                        summarize, trace_arrays, window_metrics)

log = logging.getLogger('bc_robot.orchestrate')

TASKS = ('push', 'reach')
RESET_RETRIES = 2      # a failed reset (nothing ran yet) is tried again with the same seed
RETRY_PAUSE_S = 5.0


@dataclass(frozen=True)
class DeploySettings:
    """One deploy-graph configuration. `intervene`: the scripted expert may take over with
    the pedal (HG-DAgger collection, `bc-robot demo`); otherwise it runs in `watch` mode,
    where no takeover trigger exists, so an evaluation measures the policy alone.
    `sim`, `expert`, `policy`, `teleop`: extra parameters of those nodes."""

    model: Path
    task: str = 'push'
    executor: str = 'rtc'
    inject_delay_ms: float = 0.0
    intervene: bool = False
    record: bool = False
    output_dir: Path | None = None
    episode: EpisodeSettings = field(default_factory=EpisodeSettings)
    sim: dict[str, Any] = field(default_factory=dict)
    expert: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    teleop: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        model = Path(self.model)
        missing = [f for f in ('policy.json', 'policy.onnx') if not (model / f).is_file()]
        if missing:
            raise ValueError(f'model folder {model} has no {" or ".join(missing)}')
        object.__setattr__(self, 'model', model.resolve())
        if self.task not in TASKS:
            raise ValueError(f'task {self.task!r} is not one of {", ".join(TASKS)}')
        if self.executor not in EXECUTORS:
            raise ValueError(f'executor {self.executor!r} is not one of {", ".join(EXECUTORS)}')
        if not (math.isfinite(self.inject_delay_ms) and 0 <= self.inject_delay_ms <= 10_000):
            raise ValueError(f'inject_delay_ms = {self.inject_delay_ms!r} must be in [0, 10000]')
        if self.record and self.output_dir is None:
            raise ValueError('record needs an output_dir for the episodes')

    def node_params(self, stats_path: Path) -> dict[str, dict[str, Any]]:
        return {
            'sim_arm': {'task': self.task, **self.sim},
            'sim_expert': {**self.expert,
                           'mode': 'correction' if self.intervene else 'watch'},
            'policy_node': {'executor': self.executor,
                            'inject_delay_ms': float(self.inject_delay_ms),
                            'stats_path': str(stats_path), **self.policy},
            # the scripted expert's pedal does not chatter: no release filter, so a reset
            # hands the arm back to the policy at once
            'teleop_node': {'record': bool(self.record), 'pedal_release_delay': 0.0,
                            **self.teleop},
        }


class DeploySession:
    """The deploy graph up and ready, running episodes on request; `close()` stops it and
    reads the policy node's dump."""

    def __init__(self, link: RosLink, work: Path, name: str, settings: DeploySettings,
                 ready_timeout: float = 120.0) -> None:
        self.link, self.settings = link, settings
        self.work = Path(work)
        self.stats_path = self.work / f'{name}.policy_stats.json'
        self.stats_path.unlink(missing_ok=True)
        launch = {'sim': 'true', 'model': str(settings.model)}
        if settings.output_dir is not None:
            launch['output_dir'] = str(Path(settings.output_dir).resolve())
        self.graph = GraphRun('deploy', self.work, name, link, launch,
                              settings.node_params(self.stats_path))
        self.ready_timeout = ready_timeout
        self.driver: EpisodeDriver | None = None
        self.dump: dict[str, Any] | None = None

    def __enter__(self) -> DeploySession:
        self.graph.start()
        try:
            self.graph.wait_ready(self.ready_timeout)
        except BaseException:
            self.graph.stop()
            raise
        # the teleop node records only when asked to: the driver starts/stops it then
        episode = dataclasses.replace(self.settings.episode, record=self.settings.record)
        self.driver = EpisodeDriver(self.link, self.graph, episode, self.settings.output_dir)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run_episode(self, index: int, seed: int) -> EpisodeOutcome:
        return self.driver.run(index, seed)

    def set_inject_delay(self, ms: float) -> None:
        self.link.set_parameters('policy_node', {'inject_delay_ms': float(ms)})

    def close(self) -> None:
        self.graph.stop()
        if self.stats_path.is_file():
            try:
                self.dump = json.loads(self.stats_path.read_text())
            except ValueError as exc:
                log.error('policy stats dump %s unreadable: %s', self.stats_path, exc)
        else:
            log.error('policy_node wrote no stats dump (%s); see %s', self.stats_path,
                      self.graph.log_path)

    @property
    def frames(self) -> dict[str, np.ndarray]:
        return self.driver.frames if self.driver else {}


@dataclass
class EvalResult:
    name: str
    outcomes: list[EpisodeOutcome]
    summary: dict[str, Any]
    latency: dict[str, Any]
    chunking: dict[str, Any]
    frames: dict[str, np.ndarray]
    log_path: Path

    def to_json(self, with_paths: bool = False) -> dict[str, Any]:
        return {'name': self.name, 'summary': self.summary, 'latency': self.latency,
                'chunking': self.chunking, 'log': str(self.log_path),
                'episodes': [o.to_json(with_paths) for o in self.outcomes]}


def episode_windows(dump: dict[str, Any] | None, outcomes: Sequence[EpisodeOutcome]
                    ) -> list[dict[str, Any]]:
    """Chunking figures per episode from the dump's trace ([] without a dump)."""
    if not dump:
        return []
    trace = trace_arrays(dump)
    return [window_metrics(trace, o.wall_start, o.wall_end) for o in outcomes
            if o.error is None and o.wall_end > o.wall_start]


def read_interventions(outcomes: Sequence[EpisodeOutcome]) -> None:
    """Where an episode was recorded, take the intervention count from its episode.json
    (the teleop node's own count) when it is readable; the live count stays otherwise."""
    from bc_robot.recording.episode import read_episode_json
    for outcome in outcomes:
        if not outcome.episode_dir:
            continue
        try:
            meta = read_episode_json(outcome.episode_dir)
        except (ValueError, OSError):
            continue
        count = meta.get('interventions', {}).get('count')
        if isinstance(count, int) and count != outcome.interventions:
            log.info('episode %d: episode.json counts %d intervention(s), live %d', outcome.index,
                     count, outcome.interventions)
            outcome.interventions = count


def evaluate(link: RosLink, work: Path, name: str, settings: DeploySettings,
             seeds: Sequence[int], progress: Callable[[EpisodeOutcome], None] | None = None,
             stop_after: Callable[[EpisodeOutcome], bool] | None = None) -> EvalResult:
    """Run one episode per seed on a fresh deploy graph and summarize them; `stop_after`
    (given each outcome) ends the run early when it returns True."""
    outcomes: list[EpisodeOutcome] = []
    session = DeploySession(link, work, name, settings)
    with session:
        for index, seed in enumerate(seeds):
            for attempt in range(RESET_RETRIES + 1):
                outcome = session.run_episode(index, seed)
                if not (outcome.error or '').startswith('reset') or attempt == RESET_RETRIES:
                    break
                log.warning('episode %d (seed %d): retrying after a failed reset', index, seed)
                time.sleep(RETRY_PAUSE_S)  # e.g. a stalled sim: give it time
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
            if stop_after is not None and stop_after(outcome):
                break
    read_interventions(outcomes)
    dump = session.dump
    windows = episode_windows(dump, outcomes)
    return EvalResult(name, outcomes, summarize(outcomes),
                      latency_summary(dump) if dump else {},
                      chunking_summary(windows) if windows else {}, dict(session.frames),
                      session.graph.log_path)


# In-process evaluation: the same seeds scored on a virtual clock (bc_robot.learning.rollout),
# ~10x faster than the deploy graph; `bc-robot loop --evaluation virtual` uses it between
# rounds. Corrections are still collected on the deploy graph.
VIRTUAL_DELAY_S = 0.1  # observation → chunk, about the deploy graph's measured p50


def evaluate_virtual(work: Path, name: str, model: Path, executor: str, seeds: Sequence[int],
                     timeout: float, delay_s: float = VIRTUAL_DELAY_S) -> EvalResult:
    """Score `model` on consecutive `seeds` in-process with the policy node's executor."""
    from bc_robot.learning.rollout import RolloutConfig, evaluate_model
    seeds = list(seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f'virtual evaluation needs consecutive seeds, got {seeds}')
    config = RolloutConfig(episodes=len(seeds), seed=seeds[0], timeout_s=timeout,
                           executor=executor, delay_s=delay_s, threads=2)
    summary = evaluate_model(model, config)
    outcomes = [EpisodeOutcome(index, r['seed'], success=r['success'],
                               time_to_success=r['time_to_success'], duration=r['duration'],
                               timed_out=not r['success'] and not r['error'],
                               final={'distance': r['final_distance']},
                               error=r['error'] or None)
                for index, r in enumerate(summary['results'])]
    log_path = Path(work) / f'{name}.virtual.json'
    log_path.write_text(json.dumps(summary, indent=1))
    return EvalResult(name, outcomes, summarize(outcomes), {}, {}, {}, log_path)
