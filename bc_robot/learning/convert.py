"""Recorded episode folder → training samples, built the way the deployed graph builds them.

Observations mirror observation_node (core.sync): every frame of the first camera is one
observation at that frame's header stamp ts; the other cameras contribute their frame
nearest in stamp, proprioception (joint states, TCP pose) is interpolated to ts
(`core.sync.StampedSeries`), and an input further than `max_skew_s` from ts drops the
observation. Images go through `core.preprocess.preprocess_image`, the state through
`core.state.build_state_vector`; the history is `core.sync.history_indices` over the
observation stamps, one control period apart, as the policy node stacks it.

Labels mirror the policy node's timing: action i of a chunk is for the observation's tick
+ i, so the label chunk of the observation at ts holds the command at ts + i/rate,
i = 0..H-1 (zero-order hold of the command stream). The command is the human's clean
command (/bc/teleop/label, else /bc/teleop/target, + /bc/teleop/gripper) where the human
drove (demo episodes, and intervention segments of HG-DAgger episodes) and the executed
target (/target_pose + /gripper/target) elsewhere. Past the end of the commands the last
one is repeated and marked invalid (the padding mask). A gripper stream that never
published falls back to the measured opening.

Time base: header stamps (sim time when the stack runs on /clock); messages without a
header (Float64, Bool) are placed on that clock by mapping their log time through the
/joint_states stream (`time_source: header`), or the recorder's log time is used everywhere
(`time_source: log`).

Refusals (ValueError naming the file and the topic): a required topic missing, a truncated
file (from the reader), a command or proprioception stream slower than the control rate, a
camera slower than `min_camera_rate_hz`, an input out of sync with most frames, an episode
with no usable observation.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bc_robot.core.actions import ActionLayout
from bc_robot.core.image import decode_compressed_rgb8, image_to_rgb8
from bc_robot.core.pose import Pose
from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.state import build_state_vector, gripper_opening
from bc_robot.core.sync import StampedSeries, history_indices
from bc_robot.learning.config import DaggerConfig, DataConfig
from bc_robot.recording.reader import (BagMessage, Episode, TopicMessages, read_episode,
                                       read_episode_metadata)

LOG = logging.getLogger(__name__)

DEMO_KINDS = ('demo', 'demonstration', 'teleop', 'expert')
# end_at_success: best — the task counts as finished once its distance is this close to the
# smallest it got (the cube settles; sensor noise stays below it).
BEST_DISTANCE_TOLERANCE_M = 0.001


@dataclass
class EpisodeArrays:
    """One episode's samples; index i is the observation at `times[i]`."""

    source: str
    times: np.ndarray                 # float64 [N] observation stamps, s since the first
    images: dict[str, np.ndarray]     # camera → uint8 [N, H, W, 3]
    state: np.ndarray                 # float32 [N, state_dim] raw units
    history: np.ndarray               # int64 [N, T] observation indices, oldest first
    actions: np.ndarray               # float32 [N, chunk, action_dim] label chunks
    valid: np.ndarray                 # bool [N, chunk] False past the end of the commands
    human: np.ndarray                 # bool [N] the human drove at this observation
    weights: np.ndarray               # float32 [N] sample weight (HG-DAgger options)
    auxiliary: np.ndarray | None = None  # float32 [N, aux_dim] data.auxiliary_keys (None: none)
    kind: str = 'demo'                # 'demo' or 'dagger'
    metadata: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.auxiliary is None:
            self.auxiliary = np.zeros((len(self), 0), dtype=np.float32)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def check(self) -> None:
        n = len(self)
        for name, array in [('state', self.state), ('auxiliary', self.auxiliary),
                            ('history', self.history),
                            ('actions', self.actions), ('valid', self.valid),
                            ('human', self.human), ('weights', self.weights),
                            *[(f'image {k}', v) for k, v in self.images.items()]]:
            if array.shape[0] != n:
                raise ValueError(f'{self.source}: {name} has {array.shape[0]} rows, expected {n}')
        if not all(np.all(np.isfinite(a)) for a in (self.actions, self.state, self.auxiliary)):
            raise ValueError(f'{self.source}: non-finite state, auxiliary or action values')
        if self.history.size and (self.history.min() < 0 or self.history.max() >= n):
            raise ValueError(f'{self.source}: history index out of range')


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


# A message stamped within this of a tick counts as at the tick (float round-off of stamps).
TIME_EPS = 1e-6


def _hold(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the latest message at or before each tick (-1 when none yet)."""
    return np.searchsorted(times, ticks + TIME_EPS, side='right') - 1


def _files(episode: Episode) -> str:
    return ', '.join(str(f) for f in episode.files) or str(episode.path)


def _rate(times: np.ndarray) -> float:
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return 1.0 / float(np.median(gaps)) if gaps.size else 0.0


def _check_rate(episode: Episode, topic: str, times: np.ndarray, need: float,
                why: str) -> None:
    rate = _rate(times) if len(times) >= 2 else 0.0
    if rate < need:
        raise ValueError(f'{_files(episode)}: topic {topic} runs at {rate:.3g} Hz '
                         f'({len(times)} messages), too slow: {why} (needs ≥ {need:.3g} Hz)')


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


def dagger_weights(times: np.ndarray, human: np.ndarray, takeovers: np.ndarray, kind: str,
                   dagger: DaggerConfig) -> np.ndarray:
    """Per-sample weights: demos get demo_weight; in correction episodes samples where the
    human drove get intervention_weight, policy samples within pre_intervention_window_s
    before a takeover pre_intervention_weight, the other policy samples robot_weight."""
    if kind == 'demo':
        return np.full(times.shape[0], dagger.demo_weight, dtype=np.float32)
    weights = np.where(human, dagger.intervention_weight, dagger.robot_weight)
    window = dagger.pre_intervention_window_s
    if window > 0 and takeovers.size:
        ahead = takeovers[None, :] - times[:, None]  # time until each takeover
        before = np.any((ahead > 0) & (ahead <= window), axis=1) & ~human
        weights = np.where(before, dagger.pre_intervention_weight, weights)
    return weights.astype(np.float32)


class _Commands:
    """A pose command stream (+ its gripper stream) as action vectors on the common clock."""

    def __init__(self, episode: Episode, topic: str, gripper_topic: str, clock: _Clock,
                 layout: ActionLayout, where: str) -> None:
        messages = episode.topics[topic]
        self.topic = topic
        self.times = clock.times(messages)
        self.poses = [_pose(m, where, topic) for m in messages.messages]
        gripper = episode.topics.get(gripper_topic)
        self.gripper_times = clock.times(gripper) if gripper is not None and len(gripper) \
            else None
        self.gripper = np.array([float(m.data) for m in gripper.messages]) \
            if self.gripper_times is not None else None
        self.layout = layout

    def at(self, t: float, measured_gripper: float, max_age: float | None = None
           ) -> np.ndarray | None:
        """Action vector of the command held at time t (None before the first one, or when
        the held one is older than max_age)."""
        i = int(np.searchsorted(self.times, t + TIME_EPS, side='right')) - 1
        if i < 0 or (max_age is not None and t - self.times[i] > max_age):
            return None
        gripper = measured_gripper
        if self.gripper is not None:
            j = int(np.searchsorted(self.gripper_times, t + TIME_EPS, side='right')) - 1
            if j >= 0:
                gripper = float(self.gripper[j])
        return self.layout.from_target(self.poses[i], gripper)


def convert_episode(path: str | Path, config: DataConfig,
                    dagger: DaggerConfig | None = None) -> EpisodeArrays:
    """Read one episode folder and turn it into samples (see module docstring)."""
    dagger = dagger or DaggerConfig()
    cam_topics = [config.camera_topic(c.name) for c in config.cameras]
    topics = set(cam_topics) | {
        config.joint_states_topic, config.current_pose_topic, *config.human_target_topics,
        config.human_gripper_topic, config.executed_target_topic,
        config.executed_gripper_topic, config.policy_target_topic, config.intervention_topic}
    reads_task_state = config.reads_sim_objects or bool(config.end_at_success)
    if reads_task_state:
        topics.add(config.task_state_topic)
    episode = read_episode(path, topics=topics, transform=_camera_transform(config))
    where = _files(episode)
    clock = _Clock(episode, config)
    kind = episode_kind(episode, config)
    dt = 1.0 / config.control_rate_hz
    need = config.control_rate_hz * config.min_rate_fraction
    skew = config.max_skew_s

    # Proprioception, interpolated to frame stamps as observation_node does.
    joint_msgs = episode.require(config.joint_states_topic)
    pose_msgs = episode.require(config.current_pose_topic)
    joint_times, pose_times = clock.times(joint_msgs), clock.times(pose_msgs)
    for topic, times in ((config.joint_states_topic, joint_times),
                         (config.current_pose_topic, pose_times)):
        _check_rate(episode, topic, times, need, 'observations interpolate it to each frame')
    joints = StampedSeries(capacity=len(joint_msgs) + 1)
    for t, msg in zip(joint_times, joint_msgs.messages):
        fingers = _joint_values(msg, config.finger_joints, where)
        # as observation_node reads it (unclipped): no train/deploy skew in the state input
        opening = gripper_opening(fingers, config.finger_open_m)
        joints.add(float(t), [*_joint_values(msg, config.arm_joints, where), opening])
    poses = StampedSeries(capacity=len(pose_msgs) + 1, pose=True)
    for t, msg in zip(pose_times, pose_msgs.messages):
        poses.add(float(t), _pose(msg, where, config.current_pose_topic).as_vector())

    task_states = _task_states(episode, clock, config) if reads_task_state else []
    objects = None
    if config.reads_sim_objects:
        episode.require(config.task_state_topic)  # names the file and the missing topic
        objects = _sim_objects(task_states, config.task_state_topic, where)

    # Cameras: the first is the reference stream (no camera: the joint states).
    frames = {}
    for camera, topic in zip(config.cameras, cam_topics):
        messages = episode.require(topic)
        times = clock.times(messages)
        _check_rate(episode, topic, times, config.min_camera_rate_hz,
                    'observations would be too stale')
        frames[camera.name] = (topic, times, messages.messages)
    reference_times = next(iter(frames.values()))[1] if frames else joint_times

    # Who drove, and the command streams that label each part.
    layout = ActionLayout(config.action_representation)
    intervention = episode.topics.get(config.intervention_topic)
    flags = np.array([bool(m.data) for m in intervention.messages]) \
        if intervention is not None and len(intervention) else np.zeros(0, dtype=bool)
    flag_times = clock.times(intervention) if flags.size else np.zeros(0)
    takeovers = flag_times[flags & ~np.concatenate([[False], flags[:-1]])] \
        if flags.size else np.zeros(0)

    def human_at(t: np.ndarray) -> np.ndarray:
        if kind == 'demo':
            return np.ones(t.shape, dtype=bool)
        if not flags.size:
            return np.zeros(t.shape, dtype=bool)
        index = _hold(flag_times, t)
        return np.where(index >= 0, flags[np.maximum(index, 0)], False)

    human_topic = next((t for t in config.human_target_topics
                        if len(episode.topics.get(t, ())) > 0), None)
    executed = None
    if kind != 'demo' or human_topic is None:
        if len(episode.topics.get(config.executed_target_topic, ())) == 0:
            missing = config.human_target_topics[0] if kind == 'demo' \
                else config.executed_target_topic
            raise ValueError(f'{where}: required topic {missing} is missing (labels come from '
                             f'{", ".join(config.human_target_topics)} where the human drives '
                             f'and {config.executed_target_topic} elsewhere)')
        executed = _Commands(episode, config.executed_target_topic,
                             config.executed_gripper_topic, clock, layout, where)
        if kind == 'demo':
            LOG.warning('%s: no %s in this demo: labelling it with the executed %s', where,
                        '/'.join(config.human_target_topics), config.executed_target_topic)
    human = None
    if human_topic is not None and (kind == 'demo' or flags.any()):
        human = _Commands(episode, human_topic, config.human_gripper_topic, clock, layout,
                          where)
    elif kind != 'demo' and flags.any():
        raise ValueError(f'{where}: required topic {config.human_target_topics[0]} is missing '
                         f'(the human took over, and the human\'s command is the label there)')
    for commands in (human, executed):
        if commands is not None:
            _check_rate(episode, commands.topic, commands.times, need,
                        'labels are sampled at the control rate')
    streams = [c for c in (human, executed) if c is not None]
    first_command = min(float(c.times[0]) for c in streams)
    last_command = max(float(c.times[-1]) for c in streams)
    success_time = _success_time(task_states, config.end_at_success == 'best') \
        if config.end_at_success else None
    if success_time is not None and first_command < success_time < last_command:
        last_command = success_time  # later frames count as outside_commands

    # Observations.
    dropped: Counter[str] = Counter()
    stamps, images, states, chunks, valids = [], {c: [] for c in frames}, [], [], []
    auxiliary = []
    offsets = dt * np.arange(config.chunk_length)
    for index, ts in enumerate(reference_times):
        ts = float(ts)
        if ts < first_command or ts > last_command:
            dropped['outside_commands'] += 1
            continue
        picked = {}
        for name, (topic, times, messages) in frames.items():
            k = int(np.argmin(np.abs(times - ts)))
            if abs(times[k] - ts) > skew:
                break
            picked[name] = messages[k].image
        if len(picked) != len(frames):
            dropped[f'skew {frames[name][0]}'] += 1
            continue
        joint_value = joints.sample(ts, skew)
        pose_value = poses.sample(ts, skew)
        if joint_value is None or pose_value is None:
            late = config.joint_states_topic if joint_value is None \
                else config.current_pose_topic
            dropped[f'skew {late}'] += 1
            continue
        joint_vector, pose_vector = joint_value[0], pose_value[0]
        pose = Pose(pose_vector[:3], pose_vector[3:7] / np.linalg.norm(pose_vector[3:7]))
        object_value = objects.sample(ts, SIM_OBJECTS_MAX_SKEW_S) if objects is not None else None
        if objects is not None and object_value is None:
            dropped[f'skew {config.task_state_topic}'] += 1
            continue
        measurement = (pose, joint_vector[-1], joint_vector[:-1],
                       object_value[0] if object_value is not None else None)
        state = build_state_vector(config.state_keys, *measurement)
        auxiliary.append(build_state_vector(config.auxiliary_keys, *measurement))
        label_times = ts + offsets
        driver = human_at(label_times)
        chunk = np.zeros((config.chunk_length, config.action_dim))
        valid = label_times <= last_command + 1e-9
        for i, t in enumerate(label_times):
            if not valid[i]:
                chunk[i] = chunk[i - 1]
                continue
            measured = _measured_gripper(joints, t, skew, joint_vector[-1])
            action = None
            if driver[i] and human is not None:
                # At a takeover the flag flips before the human's first command arrives:
                # until it does, what was executed is the label.
                action = human.at(t, measured, None if kind == 'demo' else max(3 * dt, 0.2))
            if action is None:
                source = executed if executed is not None else human
                action = source.at(t, measured)
            chunk[i] = action if action is not None else chunk[i - 1]
        stamps.append(ts)
        for name in frames:
            images[name].append(picked[name])
        states.append(state)
        chunks.append(chunk)
        valids.append(valid)
    n = len(stamps)
    for reason, count in dropped.items():
        if reason.startswith('skew') and count > 0.5 * len(reference_times):
            raise ValueError(f'{where}: topic {reason.split(" ", 1)[1]} is out of sync with '
                             f'{count} of {len(reference_times)} frames (no sample within '
                             f'max_skew_s = {skew:g} s of the frame stamp)')
    if n == 0:
        raise ValueError(f'{where}: no usable observation ({dict(dropped) or "no frames"})')
    stamps_arr = np.asarray(stamps)
    history = np.array([history_indices(stamps[:i + 1], config.history, dt)
                        for i in range(n)], dtype=np.int64).reshape(n, config.history)
    human_obs = human_at(stamps_arr)
    arrays = EpisodeArrays(
        source=str(episode.path), times=stamps_arr - stamps_arr[0],
        images={c: np.stack(v) for c, v in images.items()},
        state=np.asarray(states, dtype=np.float32).reshape(n, config.state_dim),
        history=history, actions=np.asarray(chunks, dtype=np.float32),
        valid=np.asarray(valids, dtype=bool), human=human_obs,
        weights=dagger_weights(stamps_arr, human_obs, takeovers, kind, dagger),
        auxiliary=np.asarray(auxiliary, dtype=np.float32).reshape(n, config.auxiliary_dim),
        kind=kind,
        metadata=dict(episode.metadata), dropped=dict(dropped))
    arrays.check()
    return arrays


# /sim/task_state comes at 20 Hz; interpolating over a few lost messages is harmless (the
# cube moves ≤ 6 cm/s), a longer gap drops the frame.
SIM_OBJECTS_MAX_SKEW_S = 0.2


def _task_states(episode: Episode, clock: _Clock, config: DataConfig
                 ) -> list[tuple[float, Any, Any]]:
    """(time, payload or None when not JSON, raw text) per task-state message, parsed once
    for both of its uses."""
    messages = episode.topics.get(config.task_state_topic)
    if messages is None:
        return []
    states = []
    for t, msg in zip(clock.times(messages), messages.messages):
        try:
            payload = json.loads(msg.data)
        except ValueError:
            payload = None
        states.append((float(t), payload, msg.data))
    return states


def _success_time(states: list[tuple[float, Any, Any]], best: bool = False) -> float | None:
    """When the task state first said success (None: no task state, or never); with `best`,
    when its distance after that first came within BEST_DISTANCE_TOLERANCE_M of its minimum
    (states without a distance: the first success)."""
    first = next((t for t, payload, _ in states
                  if isinstance(payload, dict) and payload.get('success') is True), None)
    if first is None or not best:
        return first
    after = [(t, float(payload['distance'])) for t, payload, _ in states if t >= first
             and isinstance(payload, dict) and isinstance(payload.get('distance'), (int, float))]
    if not after:
        return first
    smallest = min(d for _, d in after)
    return next(t for t, d in after if d <= smallest + BEST_DISTANCE_TOLERANCE_M)


def _sim_objects(states: list[tuple[float, Any, Any]], topic: str, where: str
                 ) -> StampedSeries:
    """Cube and goal positions over time from the simulator's task-state JSON."""
    series = StampedSeries(capacity=len(states) + 1)
    for t, payload, text in states:
        try:
            values = [float(v) for v in (*payload['cube'], *payload['goal'])]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{where}: {topic} has no cube and goal positions for '
                             f'sim_objects ({type(exc).__name__}: {exc}) in {text[:120]!r}'
                             ) from exc
        series.add(t, values)
    return series


def _measured_gripper(joints: StampedSeries, t: float, skew: float, default: float) -> float:
    sampled = joints.sample(t, max(skew, 1.0))
    return float(sampled[0][-1]) if sampled is not None else default


def _pose(msg: Any, where: str, topic: str) -> Pose:
    p, q = msg.pose.position, msg.pose.orientation
    try:
        return Pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
    except ValueError as exc:
        raise ValueError(f'{where}: topic {topic}: {exc}') from None


def convert_episodes(paths: Sequence[str | Path], config: DataConfig,
                     dagger: DaggerConfig | None = None) -> list[EpisodeArrays]:
    """Convert every episode; discarded ones (episode.json status) and, with
    skip_failed_demos, demos marked unsuccessful are left out (logged)."""
    episodes = []
    for path in paths:
        meta = read_episode_metadata(path) if Path(path).is_dir() else {}
        if meta.get('status') == 'discarded':
            LOG.info('%s: skipped (discarded)', path)
            continue
        demo = str(meta.get('kind', meta.get('mode', 'demo'))).lower() in DEMO_KINDS
        if config.skip_failed_demos and demo and meta.get('success') is False:
            LOG.info('%s: skipped (demo marked unsuccessful)', path)
            continue
        arrays = convert_episode(path, config, dagger)
        LOG.info('%s: %d samples (%s, %.1f s, human %.0f%%%s)', path, len(arrays),
                 arrays.kind, arrays.times[-1], 100.0 * arrays.human.mean(),
                 f', dropped {arrays.dropped}' if arrays.dropped else '')
        episodes.append(arrays)
    if not episodes:
        raise ValueError('no usable episode among ' + ', '.join(str(p) for p in paths))
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
