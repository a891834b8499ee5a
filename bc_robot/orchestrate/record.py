"""Record demonstrations through the record graph (`sim:=true`): the scripted human drives
the SpaceMouse and button topics (sim_expert `mode: teleop`), the teleop node integrates
them and records one rosbag2 (MCAP) episode per demonstration, exactly as with a person."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bc_robot.orchestrate.graphs import GraphError, GraphRun
from bc_robot.orchestrate.ros import RosLink
from bc_robot.recording.episode import read_episode_json

log = logging.getLogger('bc_robot.orchestrate')


@dataclass
class RecordResult:
    episodes: list[Path]
    expert: dict[str, Any]
    seconds: float
    log_path: Path

    def to_json(self) -> dict[str, Any]:
        return {'episodes': [str(p) for p in self.episodes], 'expert': self.expert,
                'seconds': self.seconds, 'log': str(self.log_path)}


def _episode_folders(folder: Path) -> set[Path]:
    return {p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.')} \
        if folder.is_dir() else set()


def _finalized(folder: Path) -> bool:
    try:
        return read_episode_json(folder).get('status') not in (None, 'recording')
    except (ValueError, OSError):
        return False


def record_demos(link: RosLink, work: Path, name: str, count: int, output_dir: Path,
                 task: str = 'push', seed: int = 1000, expert_seed: int = 1000,
                 episode_timeout: float = 30.0, sim: dict[str, Any] | None = None,
                 ready_timeout: float = 120.0, max_attempts: int | None = None,
                 expert: dict[str, Any] | None = None,
                 teleop: dict[str, Any] | None = None,
                 real_time_factor: float = 1.0) -> RecordResult:
    """Record until `count` demonstrations succeeded (the scripted human fails some, as
    people do; failed ones stay on disk labelled `success: false`, which training skips) or
    `max_attempts` (default 3 × count) were made. Scene seeds are seed+1, seed+2, …
    `teleop` overrides teleop_node parameters (e.g. `dart_enabled`: DART noise on the executed
    target, the clean command stays the label). `real_time_factor` other than 1 runs the
    sim that much slower (or faster) than real time and the whole graph on its `/clock`
    (`use_sim_time:=true`): on a machine that cannot render and record every camera frame
    in real time, half speed records them all, with the same stamps and labels a faster
    machine would. Returns the saved episode folders in recording order and the expert's
    own summary."""
    if not 1 <= count <= 10_000:
        raise ValueError(f'demonstration count {count} must be in [1, 10000]')
    if not 0.05 <= real_time_factor <= 4.0:
        raise ValueError(f'real_time_factor {real_time_factor!r} must be in [0.05, 4]')
    attempts = max_attempts or 3 * count
    if attempts < count:
        raise ValueError(f'max_attempts {attempts} is below the count {count}')
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    summary_path = Path(work) / f'{name}.expert.json'
    summary_path.unlink(missing_ok=True)
    before = _episode_folders(output_dir)
    paced = real_time_factor != 1.0
    params = {
        'sim_arm': {'task': task, 'seed': int(seed), **(sim or {}),
                    **({'real_time_factor': float(real_time_factor)} if paced else {})},
        'sim_expert': {'episodes': int(attempts), 'seed': int(expert_seed),
                       'episode_timeout': float(episode_timeout),
                       'summary_path': str(summary_path), **(expert or {})},
    }
    if teleop:
        params['teleop_node'] = dict(teleop)
    launch = {'sim': 'true', 'output_dir': str(output_dir)}
    if paced:
        launch['use_sim_time'] = 'true'
    graph = GraphRun('record', work, name, link, launch, params)
    began = time.monotonic()
    expert: dict[str, Any] = {}
    # generous: a loaded machine runs the sim slower than real time
    deadline = began + ready_timeout + attempts * (
        3.0 * episode_timeout / min(real_time_factor, 1.0) + 20.0)
    with graph:
        graph.wait_ready(ready_timeout)
        done = -1
        while True:
            graph.check()
            if summary_path.is_file():
                try:
                    expert = json.loads(summary_path.read_text())
                except ValueError:
                    pass  # being replaced right now: read it on the next pass
                if expert.get('episodes', 0) != done:
                    done = expert.get('episodes', 0)
                    log.info('demonstrations: %d recorded, %d/%d successful', done,
                             expert.get('successes', 0), count)
            finished = expert.get('successes', 0) >= count or done >= attempts
            saved = [p for p in _episode_folders(output_dir) - before if _finalized(p)]
            if finished and len(saved) >= done:
                break
            if time.monotonic() > deadline:
                raise GraphError(f'record graph ({name}): {done} demonstrations after '
                                 f'{time.monotonic() - began:.0f} s; log {graph.log_path}')
            time.sleep(0.2)
    # an episode the expert began just before the graph stopped ends 'interrupted': left out
    episodes = sorted((p for p in _episode_folders(output_dir) - before
                       if _status(p) == 'saved'), key=lambda p: p.name)
    return RecordResult(episodes, expert, time.monotonic() - began, graph.log_path)


def _status(folder: Path) -> str | None:
    try:
        return read_episode_json(folder).get('status')
    except (ValueError, OSError):
        return None
