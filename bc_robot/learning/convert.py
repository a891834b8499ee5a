"""Recorded episode folder → arrays sampled at the policy's control rate (numpy only).

For every control tick t (1 / control_rate apart) the converter takes, by zero-order hold,
the latest message at or before t of each stream:

  observation  camera frames through `core.preprocess.preprocess_image` (the function the
               observation node runs) and the state vector from `core.state` (the same
               layout /bc/obs/state carries);
  label        where the human drove (demo episodes, and intervention segments of
               HG-DAgger episodes) the human's clean command (/bc/teleop/label, else
               /bc/teleop/target, + /bc/teleop/gripper); elsewhere the executed target
               (/target_pose + /gripper/target). A gripper stream that never published
               falls back to the measured opening.

Time base: header stamps (the sim clock when the stack runs on /clock); messages without a
header (Float64, Bool) are placed on that clock by mapping their log time through the
/joint_states stream (`time_source: header`), or the recorder's log time is used everywhere
(`time_source: log`).

Refusals (ValueError naming the file and the topic): a required topic missing, a truncated
file (from the reader), a sampled stream slower than the control rate, an episode too
short for one tick.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bc_robot.core.actions import ActionLayout
from bc_robot.core.image import decode_compressed_rgb8, image_to_rgb8
from bc_robot.core.pose import Pose
from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.state import build_state_vector
from bc_robot.learning.config import DaggerConfig, DataConfig
from bc_robot.recording.reader import BagMessage, Episode, TopicMessages, read_episode

LOG = logging.getLogger(__name__)

DEMO_KINDS = ('demo', 'demonstration', 'teleop', 'expert')


@dataclass
class EpisodeArrays:
    """One episode at the control rate. Index i is tick i (time `times[i]` s from start)."""

    source: str
    times: np.ndarray                 # float64 [N] seconds since the first tick
    images: dict[str, np.ndarray]     # camera → uint8 [N, H, W, 3]
    state: np.ndarray                 # float32 [N, state_dim]
    actions: np.ndarray               # float32 [N, action_dim] label at each tick
    human: np.ndarray                 # bool [N] the human drove this tick
    weights: np.ndarray               # float32 [N] sample weight (HG-DAgger options)
    kind: str = 'demo'                # 'demo' or 'dagger'
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def check(self) -> None:
        n = len(self)
        for name, array in [('state', self.state), ('actions', self.actions),
                            ('human', self.human), ('weights', self.weights),
                            *[(f'image {k}', v) for k, v in self.images.items()]]:
            if array.shape[0] != n:
                raise ValueError(f'{self.source}: {name} has {array.shape[0]} rows, expected {n}')
        if not np.all(np.isfinite(self.actions)) or not np.all(np.isfinite(self.state)):
            raise ValueError(f'{self.source}: non-finite state or action values')


def _stamp_ns(msg: Any) -> int | None:
    if isinstance(msg, _Frame):
        return msg.stamp
    header = getattr(msg, 'header', None)
    if header is None:
        return None
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class _Clock:
    """Puts every stream on one clock (see module docstring)."""

    def __init__(self, episode: Episode, config: DataConfig) -> None:
        self.use_header = config.time_source == 'header'
        self.ref_log = self.ref_stamp = None
        reference = episode.topics.get(config.joint_states_topic)
        if self.use_header and reference is not None and len(reference) >= 2:
            stamps = np.array([_stamp_ns(m) or 0 for m in reference.messages], dtype=np.int64)
            if np.all(stamps > 0) and np.all(np.diff(stamps) >= 0):
                self.ref_log = reference.log_times.astype(np.float64)
                self.ref_stamp = stamps.astype(np.float64)

    def times(self, topic: TopicMessages) -> np.ndarray:
        """Seconds on the common clock for each message of the topic (float64)."""
        log = topic.log_times.astype(np.float64)
        if not self.use_header:
            return log * 1e-9
        stamps = [_stamp_ns(m) for m in topic.messages]
        if all(s is not None and s > 0 for s in stamps):
            array = np.asarray(stamps, dtype=np.float64)
            if np.all(np.diff(array) >= 0):
                return array * 1e-9
        if self.ref_log is None:
            return log * 1e-9
        # Linear through the reference stream, extrapolated at the ends with slope 1.
        mapped = np.interp(log, self.ref_log, self.ref_stamp)
        before, after = log < self.ref_log[0], log > self.ref_log[-1]
        mapped[before] = self.ref_stamp[0] + (log[before] - self.ref_log[0])
        mapped[after] = self.ref_stamp[-1] + (log[after] - self.ref_log[-1])
        return mapped * 1e-9


def _hold(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the latest message at or before each tick (-1 when none yet)."""
    return np.searchsorted(times, ticks, side='right') - 1


def _files(episode: Episode) -> str:
    return ', '.join(str(f) for f in episode.files) or str(episode.path)


def _check_rate(episode: Episode, topic: TopicMessages, times: np.ndarray,
                config: DataConfig) -> None:
    if len(times) < 2:
        raise ValueError(f'{_files(episode)}: topic {topic.topic} has {len(times)} message(s); '
                         f'a stream sampled at {config.control_rate_hz:g} Hz needs many')
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    rate = 1.0 / float(np.median(gaps)) if gaps.size else 0.0
    need = config.control_rate_hz * config.min_rate_fraction
    if rate < need:
        raise ValueError(f'{_files(episode)}: topic {topic.topic} runs at {rate:.3g} Hz, too '
                         f'slow for the {config.control_rate_hz:g} Hz control rate (needs '
                         f'≥ {need:.3g} Hz)')


def _camera_transform(config: DataConfig):
    """Per-message transform for read_episode: camera frames become the policy-size RGB
    image right away, so an episode never holds full-size frames in memory."""
    topics = {config.camera_topic(c.name): c for c in config.cameras}

    def transform(message: BagMessage):
        camera = topics.get(message.topic)
        msg = message.msg
        if camera is None:
            return msg
        try:
            if hasattr(msg, 'format'):  # CompressedImage
                rgb = decode_compressed_rgb8(msg.data, msg.format)
            else:
                rgb = image_to_rgb8(msg.height, msg.width, msg.encoding, msg.is_bigendian,
                                    msg.step, msg.data)
            frame = preprocess_image(rgb, camera)
        except ValueError as exc:
            raise ValueError(f'topic {message.topic} at log time {message.log_time}: {exc}'
                             ) from None
        return _Frame(_stamp_ns(msg), frame)

    return transform


@dataclass
class _Frame:
    """A camera frame already preprocessed to the policy size, with its header stamp."""

    stamp: int | None
    image: np.ndarray


def _joint_values(msg: Any, names: Sequence[str], where: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f'{where}: joint_states lacks joints {missing} (has {list(msg.name)})')
    positions = np.asarray(msg.position, dtype=np.float64)
    return positions[[index[n] for n in names]]


def episode_kind(episode: Episode, config: DataConfig) -> str:
    """'demo' when the human drove the whole episode (episode.json kind/mode says so, or no
    policy ever proposed a target), else 'dagger'."""
    meta = episode.metadata
    declared = str(meta.get('kind', meta.get('mode', ''))).lower()
    if declared:
        return 'demo' if declared in DEMO_KINDS else 'dagger'
    policy = episode.topics.get(config.policy_target_topic)
    return 'demo' if policy is None or len(policy) == 0 else 'dagger'


def dagger_weights(human: np.ndarray, kind: str, rate_hz: float,
                   dagger: DaggerConfig) -> np.ndarray:
    """Per-tick weights: demos get demo_weight; in correction episodes human ticks get
    intervention_weight, the ticks within pre_intervention_window_s before each takeover
    pre_intervention_weight, the remaining policy ticks robot_weight."""
    n = human.shape[0]
    if kind == 'demo':
        return np.full(n, dagger.demo_weight, dtype=np.float32)
    weights = np.where(human, dagger.intervention_weight, dagger.robot_weight).astype(np.float32)
    window = int(round(dagger.pre_intervention_window_s * rate_hz))
    if window > 0:
        starts = np.flatnonzero(human & ~np.concatenate([[False], human[:-1]]))
        for start in starts:
            lo = max(0, start - window)
            segment = slice(lo, start)
            weights[segment] = np.where(human[segment], weights[segment],
                                        dagger.pre_intervention_weight)
    return weights


def convert_episode(path: str | Path, config: DataConfig,
                    dagger: DaggerConfig | None = None) -> EpisodeArrays:
    """Read one episode folder and sample it at the control rate (see module docstring)."""
    dagger = dagger or DaggerConfig()
    cam_topics = [config.camera_topic(c.name) for c in config.cameras]
    topics = set(cam_topics) | {
        config.joint_states_topic, config.current_pose_topic, *config.human_target_topics,
        config.human_gripper_topic, config.executed_target_topic,
        config.executed_gripper_topic, config.policy_target_topic, config.intervention_topic}
    episode = read_episode(path, topics=topics, transform=_camera_transform(config))
    where = _files(episode)
    clock = _Clock(episode, config)
    kind = episode_kind(episode, config)

    # Required streams, each sampled on the tick grid.
    sampled: dict[str, tuple[TopicMessages, np.ndarray]] = {}
    for topic in [*cam_topics, config.joint_states_topic, config.current_pose_topic]:
        messages = episode.require(topic)
        sampled[topic] = (messages, clock.times(messages))
    human_topic = next((t for t in config.human_target_topics
                        if len(episode.topics.get(t, ())) > 0), None)
    intervention = episode.topics.get(config.intervention_topic)
    any_human = kind == 'demo' or (intervention is not None and any(
        bool(m.data) for m in intervention.messages))
    if any_human:
        if human_topic is None:
            raise ValueError(f'{where}: required topic {config.human_target_topics[0]} is '
                             f'missing (the human\'s command is the label where the human '
                             f'drives; also looked for {list(config.human_target_topics[1:])})')
        messages = episode.topics[human_topic]
        sampled[human_topic] = (messages, clock.times(messages))
    if kind != 'demo':
        messages = episode.require(config.executed_target_topic)
        sampled[config.executed_target_topic] = (messages, clock.times(messages))
    for topic, (messages, times) in sampled.items():
        _check_rate(episode, messages, times, config)

    # Tick grid: from when every stream has spoken to when the first one stops. In a
    # correction episode the human's stream speaks only during interventions, so it does
    # not bound the grid.
    bounding = [times for topic, (_m, times) in sampled.items()
                if kind == 'demo' or topic != human_topic]
    start = max(float(times[0]) for times in bounding)
    end = min(float(times[-1]) for times in bounding)
    dt = 1.0 / config.control_rate_hz
    if end - start < dt:
        raise ValueError(f'{where}: the streams overlap for {max(0.0, end - start):.3f} s, '
                         f'less than one {config.control_rate_hz:g} Hz control tick')
    ticks = start + dt * np.arange(int(np.floor((end - start) / dt + 1e-9)) + 1)
    n = ticks.shape[0]

    # Observations.
    images = {}
    for camera, topic in zip(config.cameras, cam_topics):
        messages, times = sampled[topic]
        index = _hold(times, ticks)
        images[camera.name] = np.stack([messages.messages[i].image for i in index])
    js_msgs, js_times = sampled[config.joint_states_topic]
    pose_msgs, pose_times = sampled[config.current_pose_topic]
    js_index = _hold(js_times, ticks)
    pose_index = _hold(pose_times, ticks)
    measured_gripper = np.zeros(n)
    state = np.zeros((n, config.state_dim), dtype=np.float32)
    for i in range(n):
        js = js_msgs.messages[js_index[i]]
        fingers = _joint_values(js, config.finger_joints, where)
        measured_gripper[i] = float(np.clip(np.mean(fingers) / config.finger_open_m, 0.0, 1.0))
        joints = _joint_values(js, config.arm_joints, where)
        pose = _pose(pose_msgs.messages[pose_index[i]], where, config.current_pose_topic)
        state[i] = build_state_vector(config.state_keys, pose, measured_gripper[i], joints)

    # Who drove each tick.
    if kind == 'demo':
        human = np.ones(n, dtype=bool)
    elif intervention is None or len(intervention) == 0:
        human = np.zeros(n, dtype=bool)
    else:
        flags = np.array([bool(m.data) for m in intervention.messages])
        index = _hold(clock.times(intervention), ticks)
        human = np.where(index >= 0, flags[np.maximum(index, 0)], False)

    # Labels.
    layout = ActionLayout(config.action_representation)
    actions = np.zeros((n, config.action_dim), dtype=np.float64)
    sources = []
    if human.any():
        sources.append((human, human_topic, config.human_gripper_topic))
    if (~human).any():
        sources.append((~human, config.executed_target_topic, config.executed_gripper_topic))
    stale_s = max(3.0 * dt, 0.2)
    for mask, pose_topic, gripper_topic in sources:
        messages, times = sampled[pose_topic]
        index = _hold(times, ticks)
        if kind != 'demo' and pose_topic == human_topic:
            # A takeover starts when the flag flips; until the human's first command of
            # that segment arrives, what was executed is the label.
            fresh = (index >= 0) & (ticks - times[np.maximum(index, 0)] <= stale_s)
            fallback = mask & ~fresh
            mask = mask & fresh
            if fallback.any():
                sources.append((fallback, config.executed_target_topic,
                                config.executed_gripper_topic))
        gripper = _held_gripper(episode.topics.get(gripper_topic), clock, ticks,
                                measured_gripper)
        for i in np.flatnonzero(mask):
            pose = _pose(messages.messages[max(index[i], 0)], where, pose_topic)
            actions[i] = layout.from_target(pose, gripper[i])

    arrays = EpisodeArrays(
        source=str(episode.path), times=ticks - ticks[0], images=images, state=state,
        actions=actions.astype(np.float32), human=human,
        weights=dagger_weights(human, kind, config.control_rate_hz, dagger), kind=kind,
        metadata=dict(episode.metadata))
    arrays.check()
    return arrays


def _pose(msg: Any, where: str, topic: str) -> Pose:
    p, q = msg.pose.position, msg.pose.orientation
    try:
        return Pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
    except ValueError as exc:
        raise ValueError(f'{where}: topic {topic}: {exc}') from None


def _held_gripper(messages: TopicMessages | None, clock: _Clock, ticks: np.ndarray,
                  measured: np.ndarray) -> np.ndarray:
    """Gripper command per tick: the latest command; before the first one (or when the
    topic never published) the measured opening."""
    if messages is None or len(messages) == 0:
        return measured.copy()
    values = np.array([float(m.data) for m in messages.messages])
    index = _hold(clock.times(messages), ticks)
    return np.where(index >= 0, values[np.maximum(index, 0)], measured)


def convert_episodes(paths: Sequence[str | Path], config: DataConfig,
                     dagger: DaggerConfig | None = None) -> list[EpisodeArrays]:
    episodes = []
    for path in paths:
        arrays = convert_episode(path, config, dagger)
        LOG.info('%s: %d ticks (%s, %.1f s, human %.0f%%)', path, len(arrays), arrays.kind,
                 arrays.times[-1], 100.0 * arrays.human.mean())
        episodes.append(arrays)
    return episodes


def find_episodes(patterns: Sequence[str]) -> list[Path]:
    """Episode folders matched by glob patterns. A pattern may name an episode folder or a
    folder of episodes; anything holding a metadata.yaml or *.mcap counts as an episode."""
    import glob as globlib
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(globlib.glob(str(Path(pattern).expanduser())))
        if not matches:
            raise ValueError(f'data pattern {pattern!r} matches nothing')
        for match in matches:
            path = Path(match)
            if _is_episode(path):
                found.append(path)
            elif path.is_dir():
                children = sorted(p for p in path.iterdir() if _is_episode(p))
                if not children:
                    raise ValueError(f'{path} is neither an episode folder (metadata.yaml or '
                                     f'*.mcap) nor a folder of episodes')
                found.extend(children)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _is_episode(path: Path) -> bool:
    return path.is_dir() and ((path / 'metadata.yaml').is_file() or any(path.glob('*.mcap')))
