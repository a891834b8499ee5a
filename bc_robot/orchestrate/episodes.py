"""The episode protocol on the deploy graph: reset the scene to a chosen seed without the arm
ever jumping, hand the arm to the policy, watch `/sim/task_state` until success or the time
limit, and hand back.

A reset on a running deploy graph, through public interfaces only:

1. stop the teleop node's recording (so the reset is never part of an episode);
2. hold the pedal (`/bc/pedal`): the policy node drops its queue and stops publishing,
   authority goes to the (idle) human;
3. disable the bridge (`/bc/bridge/enable` false): it holds, ignoring every source;
4. set `sim_arm`'s `seed`, call `/sim/reset`: the arm is at home, the new scene placed;
5. release the pedal: the policy's next inference waits for an observation taken after the
   release, i.e. of the new scene;
6. enable the bridge: its output restarts from the measured pose (home) and follows only
   targets that arrive after this, i.e. the policy's chunks for the new scene;
7. start recording (when asked).

Between 4 and 6 the disabled bridge still holds the pose measured before the reset, so the
arm is pulled toward it for the few tens of ms until 6, bounded by the bridge's error clip
and step limit; the episode starts from wherever that leaves the arm (measured, and within
`home_tolerance` of home or the reset is repeated).
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bc_robot.orchestrate.graphs import GraphRun
from bc_robot.orchestrate.ros import RosLink
from bc_robot.orchestrate.stats import EpisodeOutcome

log = logging.getLogger('bc_robot.orchestrate')

HOME = np.array([0.45, 0.0, 0.30])
RESET_ATTEMPTS = 4


@dataclass(frozen=True)
class EpisodeSettings:
    """Per-episode limits. `timeout` and `settle` are sim seconds (task_state time), so a
    slow machine gives the policy the same simulated time."""

    timeout: float = 25.0
    settle: float = 0.3
    record: bool = False
    home_tolerance: float = 0.02
    service_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name, low, high in (('timeout', 1.0, 600.0), ('settle', 0.0, 10.0),
                                ('home_tolerance', 0.001, 0.5),
                                ('service_timeout', 0.5, 120.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and low <= value <= high):
                raise ValueError(f'episode {name} = {value!r} must be in [{low:g}, {high:g}]')


class EpisodeError(RuntimeError):
    """The protocol could not complete a step (a service missing, the sim silent)."""


def _wait(predicate, timeout: float, graph: GraphRun, what: str, period: float = 0.02) -> None:
    began = time.monotonic()
    deadline = began + timeout
    while not predicate():
        graph.check()
        if time.monotonic() > deadline:
            raise EpisodeError(f'timed out after {timeout:g} s waiting for {what}')
        time.sleep(period)
    if time.monotonic() - began > 1.0:
        log.debug('waited %.1f s for %s', time.monotonic() - began, what)


class EpisodeDriver:
    """Runs seeded policy episodes on a running deploy graph (`GraphRun` of 'deploy')."""

    def __init__(self, link: RosLink, graph: GraphRun, settings: EpisodeSettings,
                 output_dir: Path | None = None) -> None:
        self.link, self.graph, self.settings = link, graph, settings
        self.output_dir = output_dir
        self.frames: dict[str, np.ndarray] = {}   # 'start'/'end' camera frames, first episode

    # --- the reset -----------------------------------------------------------------------------
    def _stop_recording(self) -> str | None:
        if not self.link.episode_state.get('recording'):
            return None
        ok, message = self.link.trigger(self.link.episode_clients['stop'],
                                        self.settings.service_timeout)
        if not ok:
            log.warning('episode stop refused: %s', message)
        return message

    def reset(self, seed: int) -> tuple[dict[str, Any], np.ndarray]:
        """Steps 1-6 of the module docstring, repeated (at most `RESET_ATTEMPTS` times)
        until the arm starts within `home_tolerance` of home; returns the new scene's task
        state and the measured TCP the episode starts from."""
        self._stop_recording()
        tcp = None
        for attempt in range(RESET_ATTEMPTS):
            began = time.monotonic()
            scene, tcp = self._reset_once(seed)
            off = math.inf if tcp is None else float(np.linalg.norm(tcp - HOME))
            log.debug('reset to seed %d (attempt %d): %.2f s, TCP %.1f mm from home', seed,
                      attempt + 1, time.monotonic() - began, 1e3 * off)
            if off <= self.settings.home_tolerance:
                return scene, tcp
        raise EpisodeError(f'after {RESET_ATTEMPTS} resets the TCP is at {tcp}, more than '
                           f'{self.settings.home_tolerance} m from home')

    def _reset_once(self, seed: int) -> tuple[dict[str, Any], np.ndarray | None]:
        link, graph, s = self.link, self.graph, self.settings
        link.set_pedal(True)
        _wait(lambda: link.intervention is True, s.service_timeout, graph,
              'the teleop node to take authority (/bc/intervention true)')
        ok, message = link.set_bridge_enabled(False, s.service_timeout)
        if not ok:
            raise EpisodeError(f'the bridge refused to disable: {message}')
        link.set_parameters('sim_arm', {'seed': int(seed)}, s.service_timeout)
        ok, message = link.trigger(link.reset_client, s.service_timeout)
        if not ok:
            raise EpisodeError(f'/sim/reset failed: {message}')
        scene = json.loads(message)
        reset_at = time.monotonic()
        link.set_pedal(False)
        _wait(lambda: link.intervention is False, s.service_timeout, graph,
              'authority back with the policy (/bc/intervention false); is the scripted '
              'expert still correcting?')
        # the bridge restarts from the measured pose it has: wait for one taken after reset
        _wait(lambda: link.pose_received > reset_at + 0.005, s.service_timeout, graph,
              'the measured pose of the reset arm')
        deadline = time.monotonic() + s.service_timeout
        while True:
            ok, message = link.set_bridge_enabled(True, s.service_timeout)
            if ok:
                break
            if time.monotonic() > deadline:
                raise EpisodeError(f'the bridge refused to enable: {message}')
            time.sleep(0.05)
        _wait(lambda: (link.task_state() or {}).get('episode') == scene['episode'],
              s.service_timeout, graph, f'/sim/task_state of episode {scene["episode"]}')
        time.sleep(0.05)  # a pose measured after the enable
        return scene, link.tcp(0.5)

    # --- one episode -----------------------------------------------------------------------------
    def run(self, index: int, seed: int) -> EpisodeOutcome:
        """Reset to `seed`, let the policy act until success (+ settle) or `timeout` sim
        seconds; the outcome carries the TCP path, predicted chunks and interventions."""
        link, graph, s = self.link, self.graph, self.settings
        outcome = EpisodeOutcome(index=index, seed=int(seed))
        try:
            scene, start = self.reset(seed)
        except (EpisodeError, TimeoutError, ValueError) as exc:
            outcome.error = f'reset: {exc}'
            log.error('episode %d (seed %d): %s', index, seed, outcome.error)
            return outcome
        outcome.scene = scene
        outcome.start_tcp = [float(v) for v in start]
        episode_dir = None
        if s.record:
            ok, message = link.trigger(link.episode_clients['start'], s.service_timeout)
            if not ok:
                outcome.error = f'recording did not start: {message}'
                return outcome
            match = re.match(r'episode (\S+) started', message)
            if match and self.output_dir is not None:
                episode_dir = str(self.output_dir / match.group(1))
        capture = link.begin_capture()
        outcome.wall_start = capture.started
        if not self.frames:
            frame = link.camera_frame()
            if frame is not None:
                self.frames['start'] = frame
        success_at = None
        state = link.task_state() or {}
        wall_limit = time.monotonic() + 4.0 * s.timeout + 30.0  # the sim stalled
        try:
            while True:
                graph.check()
                state = link.task_state() or {}
                if state.get('episode') != scene['episode']:
                    raise EpisodeError(f'the scene changed under the episode (task_state '
                                       f'episode {state.get("episode")})')
                t = float(state.get('episode_time', 0.0))
                if success_at is None and state.get('success'):
                    success_at = t
                if success_at is not None and t - success_at >= s.settle:
                    break
                if t >= s.timeout:
                    outcome.timed_out = success_at is None
                    break
                if time.monotonic() > wall_limit:
                    raise EpisodeError(f'/sim/task_state time stuck at {t:.2f} s')
                time.sleep(0.02)
        except EpisodeError as exc:
            outcome.error = str(exc)
        finally:
            capture = link.end_capture()
            outcome.wall_end = time.monotonic()
        if 'end' not in self.frames and 'start' in self.frames:
            frame = link.camera_frame()
            if frame is not None:
                self.frames['end'] = frame
        if s.record:
            try:
                self._stop_recording()
            except TimeoutError as exc:
                outcome.error = outcome.error or f'recording did not stop: {exc}'
        outcome.success = success_at is not None
        outcome.time_to_success = success_at
        outcome.duration = float(state.get('episode_time', 0.0))
        outcome.final = {k: state[k] for k in ('tcp', 'cube', 'marker', 'distance', 'success')
                         if k in state}
        outcome.path = capture.path if capture else []
        outcome.chunks = capture.chunks if capture else []
        outcome.interventions = len(capture.intervention_starts) if capture else 0
        outcome.intervention_time = capture.intervention_time if capture else 0.0
        outcome.episode_dir = episode_dir
        log.info('episode %d (seed %d): %s in %.1f s, %d intervention(s)%s', index, seed,
                 'success' if outcome.success else 'failed', outcome.duration,
                 outcome.interventions, f' [{outcome.error}]' if outcome.error else '')
        return outcome
