"""teleop_node between real processes: the simulated arm (MuJoCo), controller_bridge, the
scripted expert playing SpaceMouse + pedal, and this test as an independent subscriber.
Recorded bags are read back with the independent `mcap` reader + mcap_ros2 decoder.
Timing allowances are generous: the machine is shared and loaded."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, Twist
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from bc_robot.nodes.common import LATCHED_QOS, SENSOR_QOS, pose_to_msg, stamp_to_seconds

from conftest import wait_for

pytestmark = pytest.mark.integration

TELEOP, SIM, BRIDGE, EXPERT = ('bc_robot.nodes.teleop_node', 'bc_robot.nodes.sim_arm',
                               'bc_robot.nodes.controller_bridge', 'bc_robot.nodes.sim_expert')
SMALL_CAMERAS = {'camera_rate': 10.0, 'image_width': 64, 'image_height': 48}
DEEP = QoSProfile(depth=10000, history=HistoryPolicy.KEEP_LAST,
                  reliability=ReliabilityPolicy.RELIABLE)


def read_bag(folder: Path):
    """{topic: [(log_time_ns, decoded)]} read with the mcap reader (as Foxglove would)."""
    topics: dict[str, list] = {}
    with open(folder / f'{folder.name}.mcap', 'rb') as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for _schema, channel, message, decoded in reader.iter_decoded_messages():
            topics.setdefault(channel.topic, []).append((message.log_time, decoded))
    return topics


def episode_json(folder: Path) -> dict:
    return json.loads((folder / 'episode.json').read_text())


def finished(folder: Path) -> bool:
    try:
        return episode_json(folder)['recording'].get('finished') is True
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return False


def call(node, name: str, timeout: float = 20.0) -> Trigger.Response:
    clients = node.__dict__.setdefault('_episode_clients', {})   # kept: destroying a
    if name not in clients:                                       # client mid-spin upsets rclpy
        clients[name] = node.create_client(Trigger, f'/bc/episode/{name}')
    client = clients[name]
    assert client.wait_for_service(timeout), f'/bc/episode/{name} not available'
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout)
    return future.result()


class Watch:
    """Independent subscriber to the teleop outputs and the arm."""

    def __init__(self, node) -> None:
        self.lock = threading.Lock()
        self.teleop_stamps: list[float] = []
        self.events: list[dict] = []
        self.states: list[dict] = []
        self.poses: list[np.ndarray] = []
        node.create_subscription(PoseStamped, '/bc/teleop/target', self._on_target, DEEP)
        node.create_subscription(String, '/bc/episode/events', self._on_event, DEEP)
        node.create_subscription(String, '/bc/episode/state', self._on_state, LATCHED_QOS)
        node.create_subscription(PoseStamped, '/current_pose', self._on_pose, SENSOR_QOS)

    def _on_target(self, msg):
        with self.lock:
            self.teleop_stamps.append(stamp_to_seconds(msg.header.stamp))

    def _on_event(self, msg):
        with self.lock:
            self.events.append(json.loads(msg.data))

    def _on_state(self, msg):
        with self.lock:
            self.states.append(json.loads(msg.data))

    def _on_pose(self, msg):
        p = msg.pose.position
        with self.lock:
            self.poses.append(np.array([p.x, p.y, p.z]))

    def event(self, name: str) -> dict | None:
        with self.lock:
            return next((e for e in reversed(self.events) if e['event'] == name), None)

    def pose(self) -> np.ndarray | None:
        with self.lock:
            return self.poses[-1].copy() if self.poses else None


def teleop_params(output_dir: Path, **extra) -> dict:
    return {'output_dir': str(output_dir), 'min_free_mb': 0, 'flush_period': 0.25, **extra}


def test_expert_demo_through_teleop_records_a_complete_episode(probe, launch_node, tmp_path):
    """The scripted expert drives the sim arm as a SpaceMouse user through teleop_node and
    the bridge; the episode it starts and stops with the Joy button reads back with every
    topic, counts equal to an independent subscriber's, and the success label."""
    watch = Watch(probe.node)
    out = tmp_path / 'episodes'
    launch_node(TELEOP, params=teleop_params(out))
    launch_node(BRIDGE)
    # the expert waits for the arm, so its SpaceMouse publisher is matched by teleop_node
    # before it presses the episode button
    expert = launch_node(EXPERT, params={'mode': 'teleop', 'episodes': 1, 'exit_when_done': True,
                                         'side': 'left'})
    assert wait_for(lambda: probe.node.count_subscribers('/spacenav/joy') >= 1
                    and probe.node.count_publishers('/spacenav/joy') >= 1, 30)
    time.sleep(1.0)
    launch_node(SIM, params=SMALL_CAMERAS)
    assert wait_for(lambda: watch.event('start') is not None, 60), 'expert never started'
    name = watch.event('start')['episode']
    assert wait_for(lambda: not expert.alive(), 120), 'expert did not finish its episode'
    folder = out / name
    assert wait_for(lambda: finished(folder), 20)
    meta = episode_json(folder)
    assert meta['status'] == 'saved' and meta['mode'] == 'demo' and meta['task'] == 'push'
    assert meta['success_source'] == 'task_state'     # labelled from the sim's ground truth
    assert meta['recording']['ok'] and meta['interventions']['count'] == 0

    bag = read_bag(folder)
    expected = {'/camera/front/image_raw', '/camera/wrist/image_raw', '/joint_states',
                '/current_pose', '/target_pose', '/gripper/target', '/bc/teleop/target',
                '/bc/teleop/gripper', '/bc/teleop/label', '/bc/intervention',
                '/bc/episode/events', '/sim/task_state'}          # no policy runs in a demo
    assert expected <= set(bag), expected - set(bag)
    for topic, counts in meta['recording']['topics'].items():
        assert counts['dropped'] == 0, topic
        assert counts['received'] == counts['written'] == len(bag[topic]), topic

    # an independent subscriber saw the same /bc/teleop/target stream between start and stop
    events = [e for _, e in bag['/bc/episode/events']]
    names = [json.loads(e.data)['event'] for e in events]
    assert names[0] == 'start' and 'stop' in names and 'save' in names
    start_t = json.loads(events[0].data)['time']
    stop_t = next(json.loads(e.data)['time'] for e in events if json.loads(e.data)['event'] == 'stop')
    before_stop = [json.loads(m.data) for t, m in bag['/sim/task_state'] if t / 1e9 <= stop_t]
    assert meta['success'] is before_stop[-1]['success']
    in_bag = [stamp_to_seconds(m.header.stamp) for _, m in bag['/bc/teleop/target']]
    with watch.lock:
        seen = [s for s in watch.teleop_stamps if start_t <= s <= stop_t]
    recorded = [s for s in in_bag if start_t <= s <= stop_t]
    assert len(seen) > 50 and abs(len(recorded) - len(seen)) <= 2
    image = bag['/camera/front/image_raw'][-1][1]
    assert (image.width, image.height, image.encoding) == (64, 48, 'rgb8')
    # the arm followed the human: it moved, and the label equals the target (no DART)
    path = np.array([[m.pose.position.x, m.pose.position.y] for _, m in bag['/current_pose']])
    assert np.ptp(path, axis=0).max() > 0.05
    labels = [m.pose.position.x for _, m in bag['/bc/teleop/label']]
    targets = [m.pose.position.x for _, m in bag['/bc/teleop/target']]
    assert labels == targets
    assert [m.data for _, m in bag['/bc/intervention']][0] is True   # the human has authority


def test_dagger_interventions_are_recorded_as_segments(probe, launch_node, tmp_path):
    """Policy stand-in (this test) holds a pose; the pedal (Bool topic) is pressed twice;
    the human moves the arm through the twist. The bag's /bc/intervention flips, the events
    and episode.json segments agree, and the bridge executed the human's target."""
    watch = Watch(probe.node)
    out = tmp_path / 'episodes'
    launch_node(SIM, params={'camera_rate': 0.0})
    launch_node(BRIDGE)
    launch_node(TELEOP, params=teleop_params(out, mode='dagger', pedal_release_delay=0.05,
                                             policy_timeout=2.0))
    node = probe.node
    policy = node.create_publisher(PoseStamped, '/bc/policy/target', 10)
    pedal = node.create_publisher(Bool, '/bc/pedal', 10)
    twist = node.create_publisher(Twist, '/spacenav/twist', 10)
    assert wait_for(lambda: watch.pose() is not None, 60)
    hold = watch.pose()
    stop = threading.Event()

    def drive():   # the policy holds the start pose at 20 Hz
        while not stop.is_set():
            msg = pose_to_msg_at(hold)
            policy.publish(msg)
            time.sleep(0.05)

    def pose_to_msg_at(position):
        from bc_robot.core.pose import Pose
        return pose_to_msg(Pose(position, np.array([1.0, 0.0, 0.0, 0.0])), 'base',
                           node.get_clock().now().to_msg())
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert wait_for(lambda: node.count_subscribers('/bc/pedal') >= 1, 20)
        assert wait_for(lambda: watch.states and watch.states[-1]['policy_alive'], 20)
        assert call(node, 'start').success
        time.sleep(1.0)
        moving = Twist()
        moving.linear.y = 1.0
        pressed = []                      # (press, release) wall times, as the node sees them
        for hold_for in (0.6, 1.2):
            start = time.time()
            while time.time() - start < hold_for:
                pedal.publish(Bool(data=True))
                twist.publish(moving)
                time.sleep(0.02)
            pedal.publish(Bool(data=False))
            pressed.append((start, time.time()))
            twist.publish(Twist())
            time.sleep(1.0)
        response = call(node, 'stop')
        assert response.success, response.message
    finally:
        stop.set()
        driver.join()
    name = watch.event('start')['episode']
    folder = out / name
    assert wait_for(lambda: finished(folder), 20)
    meta = episode_json(folder)
    bag = read_bag(folder)
    flags = [(t, m.data) for t, m in bag['/bc/intervention']]
    assert [f for _, f in flags] == [False, True, False, True, False]   # latched first value
    segments = meta['interventions']['segments']
    assert meta['interventions']['count'] == 2 and all(s['policy_alive'] for s in segments)
    durations = [s['duration'] for s in segments]
    # each segment belongs to its press (ordering, not latency: the machine is shared)
    for i, (segment, (press, release)) in enumerate(zip(segments, pressed)):
        assert press - 0.5 <= segment['start'] <= release
        assert release <= segment['end'] + 0.5
        if i + 1 < len(pressed):
            assert segment['end'] <= pressed[i + 1][0] + 0.5
    # the flips in the bag happen when the segments say (receive time vs node time)
    flips = [t / 1e9 for t, _ in flags[1:]]
    bounds = [b for s in segments for b in (s['start'], s['end'])]
    assert np.max(np.abs(np.array(flips) - np.array(bounds))) < 0.25
    events = [json.loads(m.data) for _, m in bag['/bc/episode/events']]
    ends = [e for e in events if e['event'] == 'intervention_end']
    assert [e['duration'] for e in ends] == pytest.approx(durations)
    # both streams are there for training: policy proposals and the human's labels
    assert bag['/bc/policy/target'] and bag['/bc/teleop/label']
    # the bridge executed the human's correction: the arm moved along +y (and the policy,
    # holding the start pose, brought it back afterwards)
    with watch.lock:
        farthest = max(p[1] for p in watch.poses)
    assert farthest - hold[1] > 0.05


def test_sigkill_leaves_a_readable_bag_missing_at_most_one_second(probe, launch_node, tmp_path):
    out = tmp_path / 'episodes'
    teleop = launch_node(TELEOP, params=teleop_params(
        out, flush_period=0.5, record_topics=['/seq', '/bc/teleop/target', '/bc/episode/events']))
    node = probe.node
    seq = node.create_publisher(String, '/seq', DEEP)
    watch = Watch(node)
    measured = node.create_publisher(PoseStamped, '/current_pose', SENSOR_QOS)
    from bc_robot.core.pose import Pose
    home = Pose(np.array([0.45, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    measured.publish(pose_to_msg(home, 'base', node.get_clock().now().to_msg()))
    assert wait_for(lambda: node.count_subscribers('/seq') >= 1, 30)
    time.sleep(1.0)                       # the recorder's subscription is matched
    assert call(node, 'start').success
    name = watch.event('start')['episode'] if wait_for(lambda: watch.event('start'), 5) else None
    sent = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        seq.publish(String(data=str(sent)))
        sent += 1
        time.sleep(0.01)
    killed_at = time.time_ns()
    teleop.signal(signal.SIGKILL)
    teleop.wait(10)
    folder = out / name
    bag = read_bag(folder)                                     # opens without repair
    numbers = [int(m.data) for _, m in bag['/seq']]
    assert numbers == list(range(len(numbers)))                # no gap, no duplicate
    assert (killed_at - bag['/seq'][-1][0]) / 1e9 <= 1.0       # at most the last second lost
    assert episode_json(folder)['status'] == 'recording'       # never finalized: visible
    assert (folder / 'metadata.yaml').exists()                 # rosbag2 dir from a checkpoint


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_finalize_the_bag_and_metadata(probe, launch_node, tmp_path, sig):
    from bc_robot.recording.writer import mcap_is_complete
    out = tmp_path / 'episodes'
    teleop = launch_node(TELEOP, params=teleop_params(
        out, record_topics=['/seq', '/bc/episode/events', '/bc/intervention']))
    node = probe.node
    seq = node.create_publisher(String, '/seq', DEEP)
    watch = Watch(node)
    assert wait_for(lambda: node.count_subscribers('/seq') >= 1, 30)
    time.sleep(1.0)
    assert call(node, 'start').success
    assert wait_for(lambda: watch.event('start'), 5)
    name = watch.event('start')['episode']
    for i in range(100):
        seq.publish(String(data=str(i)))
        time.sleep(0.01)
    time.sleep(0.5)
    teleop.signal(sig)
    assert teleop.wait(20) == 0
    folder = out / name
    meta = episode_json(folder)
    assert meta['status'] == 'interrupted' and meta['recording']['finished']
    assert meta['end_time'] is not None
    assert mcap_is_complete(folder / f'{name}.mcap')
    bag = read_bag(folder)
    assert [int(m.data) for _, m in bag['/seq']] == list(range(100))
    assert meta['recording']['topics']['/seq']['written'] == 100
    stops = [json.loads(m.data) for _, m in bag['/bc/episode/events']
             if json.loads(m.data)['event'] == 'stop']
    assert stops and stops[0]['reason'] == 'shutdown'


@pytest.fixture
def tiny_mount(tmpfs):
    return tmpfs('size=1m,ro')


def test_read_only_then_full_disk_give_clear_errors_while_the_arm_stays_controllable(
        probe, launch_node, tiny_mount):
    watch = Watch(probe.node)
    node = probe.node
    launch_node(SIM, params=SMALL_CAMERAS)
    launch_node(BRIDGE)
    launch_node(TELEOP, params=teleop_params(tiny_mount / 'episodes', flush_period=0.2))
    assert wait_for(lambda: watch.pose() is not None, 60)
    assert wait_for(lambda: node.count_subscribers('/spacenav/twist') >= 1, 20)
    response = call(node, 'start')                        # read-only: refused, clearly
    assert not response.success and 'Read-only file system' in response.message
    assert str(tiny_mount) in response.message
    subprocess.run(['mount', '-o', 'remount,rw', str(tiny_mount)], check=True)
    response = call(node, 'start')                        # 1 MiB fills within seconds
    assert response.success, response.message
    def disk_full():
        event = watch.event('recording_error')
        return event if event and 'No space left' in event['message'] else None
    assert wait_for(disk_full, 60)
    error = disk_full()['message']
    assert str(tiny_mount) in error
    assert wait_for(lambda: watch.states and watch.states[-1]['state'] == 'IDLE'
                    and 'No space left' in (watch.states[-1]['error'] or ''), 10)
    name = disk_full()['failed_episode']
    bag = read_bag(tiny_mount / 'episodes' / name)        # what was written still opens
    assert bag['/joint_states']
    twist = node.create_publisher(Twist, '/spacenav/twist', 10)
    before = watch.pose()
    moving = Twist()
    moving.linear.x = 1.0
    for _ in range(75):                                   # 1.5 s at 0.15 m/s
        twist.publish(moving)
        time.sleep(0.02)
    twist.publish(Twist())
    assert wait_for(lambda: watch.pose()[0] - before[0] > 0.05, 10), 'arm did not follow'
