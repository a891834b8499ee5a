"""teleop_node in-process with real rclpy/DDS: an in-process probe plays SpaceMouse, pedal,
bridge and policy; the node's outputs and its recorded bag are checked."""
import json
import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, Twist
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.parameter import Parameter
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from bc_robot.core.pose import Pose
from bc_robot.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, pose_from_msg, pose_to_msg
from bc_robot.nodes.teleop_node import TeleopNode
from conftest import wait_for

HOME = Pose(np.array([0.45, 0.0, 0.30]), np.array([1.0, 0.0, 0.0, 0.0]))
P = Pose(np.array([0.50, -0.05, 0.25]), np.array([1.0, 0.0, 0.0, 0.0]))


class Rig:
    """Probe-side publishers/subscribers around one teleop_node."""

    def __init__(self, probe, tmp_path, **params):
        defaults = {'output_dir': str(tmp_path / 'episodes'), 'task_state_topic': '',
                    'flush_period': 0.1, 'min_free_mb': 0, 'stop_grace': 0.2}
        defaults.update(params)
        self.teleop = TeleopNode(parameter_overrides=[Parameter(k, value=v)
                                                      for k, v in defaults.items()])
        probe.add_node(self.teleop)
        node = self.node = probe.node
        self.lock = threading.Lock()
        self.clients = {}
        self.targets, self.labels, self.flags, self.events, self.states = [], [], [], [], []
        node.create_subscription(PoseStamped, '/bc/teleop/target',
                                 lambda m: self._add(self.targets, m), COMMAND_QOS)
        node.create_subscription(PoseStamped, '/bc/teleop/label',
                                 lambda m: self._add(self.labels, m), COMMAND_QOS)
        node.create_subscription(Bool, '/bc/intervention', lambda m: self._add(self.flags, m),
                                 LATCHED_QOS)
        node.create_subscription(String, '/bc/episode/events',
                                 lambda m: self._add(self.events, json.loads(m.data)), COMMAND_QOS)
        node.create_subscription(String, '/bc/episode/state',
                                 lambda m: self._add(self.states, json.loads(m.data)), LATCHED_QOS)
        self.twist = node.create_publisher(Twist, '/spacenav/twist', COMMAND_QOS)
        self.joy = node.create_publisher(Joy, '/spacenav/joy', COMMAND_QOS)
        self.commanded = node.create_publisher(PoseStamped, '/target_pose', COMMAND_QOS)
        self.measured = node.create_publisher(PoseStamped, '/current_pose', SENSOR_QOS)
        self.policy = node.create_publisher(PoseStamped, '/bc/policy/target', COMMAND_QOS)

    def _add(self, bucket, msg):
        with self.lock:
            bucket.append((time.monotonic(), msg))

    def pose(self, pose):
        return pose_to_msg(pose, 'base', self.node.get_clock().now().to_msg())

    def call(self, name, timeout=10.0):
        if name not in self.clients:     # kept: destroying a client mid-spin upsets rclpy
            self.clients[name] = self.node.create_client(Trigger, f'/bc/episode/{name}')
        client = self.clients[name]
        assert client.wait_for_service(timeout)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout)
        return future.result()

    def press(self, buttons):
        self.joy.publish(Joy(axes=[0.0] * 6, buttons=buttons))


@pytest.fixture
def make_rig(probe, tmp_path):
    """Rig factory; closes the node (recorder threads included) before the probe stops."""
    rigs = []

    def _make(**params):
        rigs.append(Rig(probe, tmp_path, **params))
        return rigs[-1]
    yield _make
    for rig in rigs:
        rig.teleop.close()
        probe.remove_node(rig.teleop)
        rig.teleop.destroy_node()


def test_demo_mode_integrates_the_spacemouse_from_the_measured_pose(make_rig, tmp_path):
    rig = make_rig(record=False)
    assert wait_for(lambda: rig.flags and rig.flags[-1][1].data is True, 5)   # human drives
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            rig.measured.publish(rig.pose(HOME))
            time.sleep(0.02)
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert wait_for(lambda: len(rig.targets) > 5, 5)
        first = pose_from_msg(rig.targets[0][1])
        assert np.allclose(first.position, HOME.position)        # starts where the arm is
        with rig.lock:
            n = len(rig.targets)
        moving = Twist()
        moving.linear.x = 1.0
        for _ in range(25):
            rig.twist.publish(moving)
            time.sleep(0.02)
        time.sleep(0.1)
        with rig.lock:
            moved = [pose_from_msg(m) for _, m in rig.targets[n:]]
            stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for _, m in rig.targets[n:]]
        x = np.array([p.position[0] for p in moved])
        steps = np.diff(x) / np.maximum(np.diff(stamps), 1e-6)
        assert x[-1] > HOME.position[0] + 0.02
        assert np.max(steps) < 0.15 * 1.5                       # never faster than the scale
        assert np.all(np.diff(x) >= -1e-12)                     # no step backwards
        assert np.max(np.abs(x[-1] - x[0])) <= 0.1 + 1e-9       # max_lead respected
    finally:
        stop.set()
        feeder.join()


def test_pedal_takeover_is_immediate_and_starts_at_the_commanded_pose(make_rig, tmp_path):
    """rate_hz=1: a tick is 1 s away, so a flag and target within 0.5 s prove the handover
    happens in the pedal callback (within one control tick at any rate)."""
    rig = make_rig(mode='dagger', rate_hz=1.0, record=False, anchor_timeout=30.0,
              policy_timeout=30.0)
    assert wait_for(lambda: rig.flags and rig.flags[-1][1].data is False, 5)  # policy drives
    rig.measured.publish(rig.pose(HOME))
    rig.commanded.publish(rig.pose(P))
    rig.policy.publish(rig.pose(P))
    time.sleep(1.5)                      # let the 1 Hz tick run once with the anchor known
    with rig.lock:
        n_targets = len(rig.targets)
    pressed_at = time.monotonic()
    rig.press([0, 0, 1])
    assert wait_for(lambda: rig.flags[-1][1].data is True, 3)
    flag_time = rig.flags[-1][0]
    assert flag_time - pressed_at < 0.5
    with rig.lock:
        after = [(t, pose_from_msg(m)) for t, m in rig.targets[n_targets:] if t >= pressed_at]
    assert after and after[0][0] - pressed_at < 0.5
    assert np.array_equal(after[0][1].position, P.position)      # bumpless: exactly P
    events = [e for _, e in rig.events]
    assert events[-1]['event'] == 'intervention_start' and events[-1]['policy_alive'] is True
    rig.press([0, 0, 0])
    assert wait_for(lambda: rig.flags[-1][1].data is False, 3)   # release → policy again


def test_pedal_without_a_running_policy_is_flagged_and_handed_back(make_rig, tmp_path):
    rig = make_rig(mode='dagger', record=False, pedal_release_delay=0.05)
    rig.measured.publish(rig.pose(HOME))
    assert wait_for(lambda: rig.flags and rig.flags[-1][1].data is False, 5)
    rig.press([0, 0, 1])
    assert wait_for(lambda: rig.flags[-1][1].data is True, 3)
    assert wait_for(lambda: any(e['event'] == 'intervention_start' for _, e in rig.events), 3)
    start = [e for _, e in rig.events if e['event'] == 'intervention_start'][-1]
    assert start['policy_alive'] is False
    rig.press([0, 0, 0])
    assert wait_for(lambda: rig.flags[-1][1].data is False, 3)
    assert wait_for(lambda: rig.states and rig.states[-1][1]['authority'] == 'policy', 3)


def test_episode_services_record_a_bag_with_counts_matching_episode_json(make_rig, tmp_path):
    rig = make_rig(mode='demo', task='push', operator='tester')
    rig.measured.publish(rig.pose(HOME))
    # the recorder discovers the node's own topics from the graph and matches them (the
    # episode events go into the bag directly)
    assert wait_for(lambda: '/bc/teleop/target' in rig.teleop.recorder.tap.subscribed(), 10)
    assert '/bc/episode/events' not in rig.teleop.recorder.tap.subscribed()
    response = rig.call('start')
    assert response.success, response.message
    name = response.message.split()[1]
    again = rig.call('start')
    assert not again.success and 'already recording' in again.message
    for _ in range(40):
        rig.measured.publish(rig.pose(HOME))
        time.sleep(0.02)
    assert rig.call('mark_success').success
    response = rig.call('stop')
    assert response.success and 'saved' in response.message
    folder = tmp_path / 'episodes' / name
    assert wait_for(lambda: (folder / 'episode.json').exists() and json.loads(
        (folder / 'episode.json').read_text())['recording'].get('finished'), 10)
    meta = json.loads((folder / 'episode.json').read_text())
    assert meta['status'] == 'saved' and meta['success'] is True
    assert meta['success_source'] == 'operator'
    assert meta['task'] == 'push' and meta['operator'] == 'tester'
    with open(folder / f'{name}.mcap', 'rb') as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        counts = {}
        events = []
        for _s, channel, _m, decoded in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == '/bc/episode/events':
                events.append(json.loads(decoded.data)['event'])
    for topic, c in meta['recording']['topics'].items():
        assert c['dropped'] == 0 and c['written'] == c['received'] == counts[topic], topic
    assert counts['/bc/teleop/target'] >= 30 and counts['/bc/intervention'] >= 1
    assert events[0] == 'start' and 'stop' in events and 'mark_success' in events
    assert not rig.call('stop').success          # nothing is recording


def test_unwritable_output_dir_refuses_start_while_teleop_keeps_running(make_rig, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    rig = make_rig(output_dir=str(blocker / 'episodes'))
    rig.measured.publish(rig.pose(HOME))
    response = rig.call('start')
    assert not response.success and 'cannot start recording' in response.message
    assert str(blocker) in response.message
    assert wait_for(lambda: rig.states and rig.states[-1][1]['state'] == 'IDLE'
                    and rig.states[-1][1]['error'], 5)
    with rig.lock:
        n = len(rig.targets)
    for _ in range(10):
        rig.measured.publish(rig.pose(HOME))
        time.sleep(0.03)
    assert len(rig.targets) > n                  # the arm is still controllable


@pytest.mark.parametrize('name, value, text', [('mode', 'auto', "'mode'"),
                                               ('rate_hz', 0.0, "'rate_hz'"),
                                               ('axis_signs', [1.0, 1.0, 1.0, 1.0, 1.0, 0.5],
                                                'axis_signs')])
def test_bad_parameters_refuse_startup_naming_them(rclpy_context, name, value, text):
    with pytest.raises(ValueError, match=text):
        TeleopNode(parameter_overrides=[Parameter(name, value=value)])


def test_config_yaml_lists_every_parameter_with_valid_defaults():
    import yaml

    from bc_robot.nodes.teleop_node import SCHEMA
    from conftest import REPO
    data = yaml.safe_load((REPO / 'config' / 'teleop_node.yaml').read_text())
    params = data['teleop_node']['ros__parameters']
    assert sorted(params) == sorted(SCHEMA.names())
    assert SCHEMA.validate(params) == SCHEMA.defaults()


def test_dart_perturbs_the_executed_target_but_not_the_label(make_rig):
    rig = make_rig(record=False, dart_enabled=True, dart_seed=3, dart_sigma_position=0.01,
                   dart_max_position=0.01, dart_time_constant=0.2)
    for _ in range(60):
        rig.measured.publish(rig.pose(HOME))
        time.sleep(0.02)
    assert wait_for(lambda: len(rig.labels) > 40 and len(rig.targets) > 40, 5)
    with rig.lock:
        labels = {(m.header.stamp.sec, m.header.stamp.nanosec): pose_from_msg(m)
                  for _, m in rig.labels}
        pairs = [(pose_from_msg(m), labels.get((m.header.stamp.sec, m.header.stamp.nanosec)))
                 for _, m in rig.targets]
    offsets = [np.linalg.norm(t.position - l.position) for t, l in pairs if l is not None]
    assert len(offsets) > 30
    assert max(offsets) <= 0.01 + 1e-9 and max(offsets) > 1e-4      # bounded, but there
    for _, label in pairs:                                           # the label is clean:
        if label is not None:                                        # no input → it holds
            assert np.allclose(label.position, HOME.position)


def test_worst_policy_latency_keeps_the_largest_numeric_value():
    from bc_robot.nodes.episode_control import _worst
    reports = [{'obs_to_target_ms_p99': '41.5', 'executor': 'rtc'},
               {'obs_to_target_ms_p99': '63.0', 'inference_ms_p99': 'nan'},
               {'obs_to_target_ms_p99': '50.2', 'inference_ms_p99': '12.0'}]
    assert _worst(reports) == {'obs_to_target_ms_p99': 63.0, 'inference_ms_p99': 12.0}
