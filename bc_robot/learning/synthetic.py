"""Synthetic recorded episodes and datasets for tests and benchmarks.

`write_episode` writes a real rosbag2 folder (MCAP storage through the rosbags writer, CDR
messages, metadata.yaml, episode.json) with the topics and rates the recorder captures, so
the reader, the converter, `bc-robot train` and the DDP smoke run are exercised on the same
bytes a recording holds. The scene is a toy reach: the TCP moves from home towards a goal
whose position is drawn in the camera image, so a policy has to look to act.

`bimodal_episodes` builds control-rate arrays directly: one observation, two equally likely
chunks (left or right). A unimodal regressor lands between them; expressive heads must not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bc_robot.core.image import array_to_image
from bc_robot.core.pose import quat_to_rot6d
from bc_robot.core.stamps import split_seconds
from bc_robot.learning.config import ARM_JOINTS, FINGER_JOINTS
from bc_robot.learning.convert import EpisodeArrays

HOME = np.array([0.45, 0.0, 0.30])
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # gripper pointing down (x, y, z, w)

DEFAULT_RATES = {
    '/camera/front/image_raw': 30.0,
    '/camera/wrist/image_raw': 30.0,
    '/joint_states': 100.0,
    '/current_pose': 100.0,
    '/target_pose': 100.0,
    '/gripper/target': 10.0,
    '/bc/teleop/target': 50.0,
    '/bc/teleop/label': 50.0,
    '/bc/teleop/gripper': 10.0,
    '/bc/policy/target': 20.0,
    '/bc/policy/gripper': 20.0,
    '/sim/task_state': 10.0,
}

MSGTYPES = {
    '/camera/front/image_raw': 'sensor_msgs/msg/Image',
    '/camera/wrist/image_raw': 'sensor_msgs/msg/Image',
    '/joint_states': 'sensor_msgs/msg/JointState',
    '/current_pose': 'geometry_msgs/msg/PoseStamped',
    '/target_pose': 'geometry_msgs/msg/PoseStamped',
    '/gripper/target': 'std_msgs/msg/Float64',
    '/bc/teleop/target': 'geometry_msgs/msg/PoseStamped',
    '/bc/teleop/label': 'geometry_msgs/msg/PoseStamped',
    '/bc/teleop/gripper': 'std_msgs/msg/Float64',
    '/bc/policy/target': 'geometry_msgs/msg/PoseStamped',
    '/bc/policy/gripper': 'std_msgs/msg/Float64',
    '/bc/intervention': 'std_msgs/msg/Bool',
    '/bc/episode/events': 'std_msgs/msg/String',
    '/sim/task_state': 'std_msgs/msg/String',
}


@dataclass
class SyntheticEpisode:
    """Settings of one synthetic episode (see module docstring)."""

    goal: tuple[float, float] = (0.6, 0.1)
    cube: tuple[float, float, float] | None = (0.5, 0.05, 0.025)  # static; None: not reported
    success_at_s: float | None = None  # when /sim/task_state starts reporting success
    duration_s: float = 3.0
    image_size: tuple[int, int] = (48, 64)  # height, width of the raw camera frames
    encoding: str = 'rgb8'
    cameras: tuple[str, ...] = ('front', 'wrist')
    rates: dict[str, float] = field(default_factory=dict)
    drop_topics: tuple[str, ...] = ()
    # (start, end) seconds where the human took over; non-empty makes a policy episode.
    interventions: tuple[tuple[float, float], ...] = ()
    sim_start_s: float = 100.0         # header stamps (sim clock)
    log_start_ns: int = 1_700_000_000_000_000_000  # recorder log time (wall clock)
    real_time_factor: float = 1.0      # sim seconds per wall second
    label_offset: float = 0.0          # extra offset (m, y) of the human's clean label
    metadata: dict = field(default_factory=dict)
    write_metadata_yaml: bool = True
    writer: str = 'rosbags'  # 'rosbags' (rosbags' MCAP writer) or 'recorder' (BagWriter)


def tcp_path(goal: Sequence[float], t: np.ndarray, duration: float) -> np.ndarray:
    """TCP position at times t: smooth move from home to above the goal."""
    s = np.clip(t / (0.7 * duration), 0.0, 1.0)
    s = s * s * (3 - 2 * s)
    end = np.array([goal[0], goal[1], 0.10])
    return HOME[None, :] + s[:, None] * (end - HOME)[None, :]


def render(goal: Sequence[float], tcp: np.ndarray, size: tuple[int, int],
           wrist: bool = False) -> np.ndarray:
    """Toy RGB frame: grey table, red goal square, blue TCP square (top view)."""
    h, w = size
    image = np.full((h, w, 3), 90, dtype=np.uint8)

    def pixel(x: float, y: float) -> tuple[int, int]:
        # x in [0.2, 0.8] → rows, y in [-0.4, 0.4] → columns
        return (int(np.clip((x - 0.2) / 0.6 * (h - 1), 0, h - 1)),
                int(np.clip((y + 0.4) / 0.8 * (w - 1), 0, w - 1)))

    r, c = pixel(*goal)
    image[max(0, r - 3):r + 4, max(0, c - 3):c + 4] = (220, 30, 30)
    r, c = pixel(tcp[0], tcp[1])
    image[max(0, r - 2):r + 3, max(0, c - 2):c + 3] = (30, 30, 220)
    if wrist:
        image = image[::-1].copy()
    return image


def write_episode(path: str | Path, settings: SyntheticEpisode | None = None) -> Path:
    """Write one synthetic episode folder (rosbag2 + MCAP + episode.json); returns it."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    s = settings or SyntheticEpisode()
    path = Path(path)
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    rates = {**DEFAULT_RATES, **s.rates}
    policy_episode = bool(s.interventions)

    def human_at(t: float) -> bool:
        return not policy_episode or any(a <= t < b for a, b in s.interventions)

    def stamp(t: float):
        sec, nsec = split_seconds(s.sim_start_s + t)
        return T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec)

    def header(t: float):
        return T['std_msgs/msg/Header'](stamp=stamp(t), frame_id='base')

    def pose_msg(t: float, p: np.ndarray):
        g = T['geometry_msgs/msg/Pose'](
            position=T['geometry_msgs/msg/Point'](x=float(p[0]), y=float(p[1]), z=float(p[2])),
            orientation=T['geometry_msgs/msg/Quaternion'](x=1.0, y=0.0, z=0.0, w=0.0))
        return T['geometry_msgs/msg/PoseStamped'](header=header(t), pose=g)

    def gripper_value(t: float) -> float:
        return 1.0 if t < 0.6 * s.duration_s else 0.0

    arrival = tcp_path(s.goal, np.array([s.duration_s]), s.duration_s)[0]  # task distance 0
    events: list[tuple[float, str, object]] = []  # (sim time, topic, message)
    topics = [*(f'/camera/{c}/image_raw' for c in s.cameras), '/joint_states', '/current_pose',
              '/target_pose', '/gripper/target', '/bc/teleop/target', '/bc/teleop/label',
              '/bc/teleop/gripper', '/sim/task_state']
    if policy_episode:
        topics += ['/bc/policy/target', '/bc/policy/gripper']
    for topic in topics:
        if topic in s.drop_topics:
            continue
        rate = rates[topic]
        times = np.arange(0.0, s.duration_s, 1.0 / rate)
        if topic.startswith('/bc/teleop/'):
            times = np.array([t for t in times if human_at(t)])
        if topic.startswith('/bc/policy/'):
            times = np.array([t for t in times if not human_at(t)])
        if times.size == 0:
            continue
        positions = tcp_path(s.goal, times, s.duration_s)
        lead = tcp_path(s.goal, times + 0.1, s.duration_s)
        for t, p, target in zip(times, positions, lead):
            t = float(t)
            if topic.startswith('/camera/'):
                frame = render(s.goal, p, s.image_size, wrist='wrist' in topic)
                if s.encoding == 'bgr8':
                    frame = frame[:, :, ::-1].copy()
                fields = array_to_image(frame, s.encoding)
                msg = T['sensor_msgs/msg/Image'](
                    header=header(t), height=fields.height, width=fields.width,
                    encoding=fields.encoding, is_bigendian=0, step=fields.step,
                    data=np.frombuffer(fields.data, dtype=np.uint8))
            elif topic == '/joint_states':
                opening = gripper_value(t) * 0.04
                msg = T['sensor_msgs/msg/JointState'](
                    header=header(t), name=[*ARM_JOINTS, *FINGER_JOINTS],
                    position=np.array([*(0.1 * np.arange(7) + p[0]), opening, opening]),
                    velocity=np.zeros(0), effort=np.zeros(0))
            elif topic == '/current_pose':
                msg = pose_msg(t, p)
            elif topic in ('/target_pose', '/bc/teleop/target', '/bc/policy/target'):
                msg = pose_msg(t, target)
            elif topic == '/bc/teleop/label':
                msg = pose_msg(t, target + np.array([0.0, s.label_offset, 0.0]))
            elif topic == '/sim/task_state':
                state = {'task': 'synthetic', 'time': t, 'tcp': p.tolist(), 'goal': list(s.goal),
                         'success': s.success_at_s is not None and t >= s.success_at_s,
                         'distance': float(np.linalg.norm(p - arrival))}
                if s.cube is not None:
                    state['cube'] = list(s.cube)
                msg = T['std_msgs/msg/String'](data=json.dumps(state))
            else:  # gripper topics
                msg = T['std_msgs/msg/Float64'](data=gripper_value(t))
            events.append((t, topic, msg))
    if policy_episode and '/bc/intervention' not in s.drop_topics:
        Bool = T['std_msgs/msg/Bool']
        events.append((0.0, '/bc/intervention', Bool(data=False)))
        for a, b in s.interventions:
            events.append((a, '/bc/intervention', Bool(data=True)))
            events.append((b, '/bc/intervention', Bool(data=False)))
    String = T['std_msgs/msg/String']
    events.append((0.0, '/bc/episode/events', String(data=json.dumps({'event': 'start'}))))
    events.sort(key=lambda e: (e[0], e[1]))

    path.parent.mkdir(parents=True, exist_ok=True)
    records = [(topic, s.log_start_ns + int(round(t / s.real_time_factor * 1e9)),
                store.serialize_cdr(msg, MSGTYPES[topic])) for t, topic, msg in events]
    if s.writer == 'recorder':
        # The recorder's own storage layer (checkpointed MCAP + metadata.yaml).
        from bc_robot.recording.writer import BagWriter
        bag = BagWriter(path)
        bag.open()
        for topic, log_time, data in records:
            bag.write(topic, MSGTYPES[topic], data, log_time)
        bag.close()
    else:
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            connections = {}
            for topic, log_time, data in records:
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, MSGTYPES[topic],
                                                               typestore=store)
                writer.write(connections[topic], log_time, data)
    meta = {'task': 'synthetic', 'mode': 'dagger' if policy_episode else 'demo',
            'goal': list(s.goal), **s.metadata}
    (path / 'episode.json').write_text(json.dumps(meta, indent=2))
    if not s.write_metadata_yaml:
        (path / 'metadata.yaml').unlink()
    return path


def bimodal_episodes(n_episodes: int = 32, samples: int = 16, chunk_length: int = 4,
                     separation: float = 0.1, seed: int = 0, history: int = 1
                     ) -> tuple[list[EpisodeArrays], np.ndarray]:
    """Episodes whose observation (state at home, no camera) is always the same and whose
    label chunk goes left or right (y = ∓separation, alternate episodes), with 2 mm of
    position noise. Returns (episodes, modes): modes[k] is the [chunk_length, 10] chunk of
    mode k."""
    rng = np.random.default_rng(seed)
    rot = quat_to_rot6d(DOWN)
    modes = np.zeros((2, chunk_length, 10), dtype=np.float32)
    for k, sign in enumerate((-1.0, 1.0)):
        modes[k, :, 0] = HOME[0]
        modes[k, :, 1] = sign * separation * np.linspace(0.5, 1.0, chunk_length)
        modes[k, :, 2] = HOME[2]
        modes[k, :, 3:9] = rot
        modes[k, :, 9] = 1.0
    state = np.r_[HOME, rot, 1.0].astype(np.float32)
    episodes = []
    for e in range(n_episodes):
        actions = np.repeat(modes[e % 2][None], samples, axis=0)
        actions[:, :, :3] += rng.normal(0, 0.002, (samples, chunk_length, 3)).astype(np.float32)
        index = np.arange(samples)
        episodes.append(EpisodeArrays(
            source=f'bimodal-{e}', times=index * 0.05, images={},
            state=np.tile(state, (samples, 1)),
            history=np.clip(index[:, None] + np.arange(1 - history, 1)[None], 0, None),
            actions=actions, valid=np.ones((samples, chunk_length), dtype=bool),
            human=np.ones(samples, dtype=bool), weights=np.ones(samples, dtype=np.float32)))
    return episodes, modes
