"""episode.json: what a recorded bag was, kept beside it in the episode folder.

<output_dir>/<episode>/            rosbag2 directory (metadata.yaml + <episode>.mcap)
<output_dir>/<episode>/episode.json  this metadata

Written atomically (temporary file + rename) when the episode starts, refreshed while it
records, and rewritten when it stops, is saved, labelled or discarded, so a reader never
sees half a file and a crash leaves the last complete version (status "recording" tells
that the episode was never finalized).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import bc_robot

EPISODE_FILE = 'episode.json'
SCHEMA_VERSION = 1
STATUSES = ('recording', 'stopped', 'saved', 'discarded', 'interrupted', 'failed')


def iso_time(unix_seconds: float | None) -> str | None:
    if unix_seconds is None:
        return None
    return _dt.datetime.fromtimestamp(unix_seconds, tz=_dt.timezone.utc).isoformat()


def latency_stats(samples: Sequence[float]) -> dict[str, Any]:
    """count / mean / p50 / p95 / p99 / max of latency samples (same unit in and out)."""
    values = np.asarray([v for v in samples if math.isfinite(v)], dtype=np.float64)
    if values.size == 0:
        return {'count': 0}
    return {'count': int(values.size), 'mean': float(values.mean()),
            'p50': float(np.percentile(values, 50)), 'p95': float(np.percentile(values, 95)),
            'p99': float(np.percentile(values, 99)), 'max': float(values.max())}


@dataclass
class EpisodeMetadata:
    name: str
    task: str = ''
    operator: str = ''
    mode: str = 'demo'
    status: str = 'recording'
    success: bool | None = None
    success_source: str | None = None
    start_time: float | None = None        # unix seconds (node clock)
    end_time: float | None = None
    interventions: dict[str, Any] = field(default_factory=lambda: {'count': 0, 'segments': []})
    model: dict[str, Any] = field(default_factory=dict)        # name, sha256, path
    policy_latency: dict[str, Any] = field(default_factory=dict)
    recording: dict[str, Any] = field(default_factory=dict)    # EpisodeWriter.report()
    dart: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    bc_robot_version: str = bc_robot.__version__
    ros_distro: str = field(default_factory=lambda: os.environ.get('ROS_DISTRO', 'kilted'))

    def __post_init__(self) -> None:
        if not self.name or '/' in self.name or self.name in ('.', '..'):
            raise ValueError(f'episode name {self.name!r} must be a non-empty folder name')
        if self.status not in STATUSES:
            raise ValueError(f'episode status {self.status!r} must be one of {STATUSES}')

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        duration = None if self.start_time is None or self.end_time is None \
            else max(0.0, self.end_time - self.start_time)
        data.update(schema_version=SCHEMA_VERSION, duration=duration,
                    start_iso=iso_time(self.start_time), end_iso=iso_time(self.end_time))
        return data


def write_episode_json(directory: str | Path, metadata: EpisodeMetadata | dict[str, Any]) -> Path:
    """Atomic write of <directory>/episode.json."""
    data = metadata.to_json() if isinstance(metadata, EpisodeMetadata) else metadata
    path = Path(directory) / EPISODE_FILE
    tmp = path.with_name(f'.{EPISODE_FILE}.tmp')
    with open(tmp, 'w', encoding='utf-8') as handle:
        json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False, default=_jsonable)
        handle.write('\n')
    os.replace(tmp, path)
    return path


def read_episode_json(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / EPISODE_FILE
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ValueError(f'{path} does not exist: not an episode folder') from None
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path} is not valid JSON: {exc}') from None
    if not isinstance(data, dict) or data.get('schema_version') != SCHEMA_VERSION:
        raise ValueError(f'{path}: schema_version {data.get("schema_version")!r} '
                         f'is not {SCHEMA_VERSION}')
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'{type(value).__name__} is not JSON serializable')


def model_info(model_dir: str | Path) -> dict[str, Any]:
    """Name and sha256 of a deployed policy artifact (policy.json + policy.onnx); the hash
    is computed from the file, not trusted from the spec."""
    from bc_robot.core.spec import load_spec, sha256_file
    model_dir = Path(model_dir)
    spec = load_spec(model_dir, verify_hash=False)
    return {'name': spec.name, 'path': str(model_dir.resolve()),
            'sha256': sha256_file(model_dir / 'policy.onnx'),
            'spec_sha256': spec.onnx_sha256 or None}


def recover_interrupted(output_dir: str | Path, quiet_for: float = 30.0,
                        distro: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Episodes a previous run never finalized (the recorder was killed): episode.json still
    says 'recording' and the bag has not been touched for `quiet_for` s (a live recorder
    rewrites it every checkpoint, so another running recorder's episode is never touched).
    Their bags are repaired if they lost the footer, and they are marked 'interrupted'."""
    import time

    from bc_robot.recording.writer import repair_bag
    recovered = []
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return recovered
    for folder in sorted(output_dir.iterdir()):
        bag = folder / f'{folder.name}.mcap'
        if not (folder / EPISODE_FILE).is_file() or not bag.is_file():
            continue
        try:
            data = read_episode_json(folder)
        except ValueError:
            continue
        if data.get('status') != 'recording' or time.time() - bag.stat().st_mtime < quiet_for:
            continue
        report = repair_bag(folder, distro or None)
        data['status'] = 'interrupted'
        data.setdefault('notes', {})['recovered'] = dict(report, time=time.time())
        write_episode_json(folder, data)
        recovered.append((folder.name, report))
    return recovered
