"""observation_node in-process over real DDS: synthetic camera frames (raw and JPEG) and
proprioception in, policy-size images and the labelled state out, with identical stamps and
proprioception interpolated to the camera stamp; a missing camera refuses startup."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState

from bc_robot.core.pose import Pose
from bc_robot.core.spec import CameraSpec
from bc_robot.nodes.common import SENSOR_QOS, pose_to_msg, seconds_to_stamp, stamp_to_seconds
from bc_robot.nodes.image_msgs import compressed_image_to_msg, image_msg_to_rgb8, image_to_msg
from bc_robot.runtime.testing_models import make_spec, write_model
from conftest import wait_for

JOINTS = [f'joint{i}' for i in range(1, 8)] + ['finger_joint1', 'finger_joint2']


class Rig:
    """Probe publishers playing camera + arm driver, and subscribers on the outputs."""

    def __init__(self, probe, model_dir, **params):
        from bc_robot.nodes.observation_node import ObservationNode
        overrides = [Parameter('model', value=str(model_dir))] + [
            Parameter(k, value=v) for k, v in params.items()]
        self.obs = ObservationNode(parameter_overrides=overrides)
        probe.add_node(self.obs)
        node = self.node = probe.node
        self.lock = threading.Lock()
        self.images, self.states, self.diagnostics = {}, [], []
        self.pub_front = node.create_publisher(Image, '/camera/front/image_raw', SENSOR_QOS)
        self.pub_wrist = node.create_publisher(CompressedImage, '/camera/wrist/image_raw/compressed',
                                               SENSOR_QOS)
        self.pub_joints = node.create_publisher(JointState, '/joint_states', SENSOR_QOS)
        self.pub_pose = node.create_publisher(PoseStamped, '/current_pose', SENSOR_QOS)
        for cam in ('front', 'wrist'):
            node.create_subscription(Image, f'/bc/obs/{cam}',
                                     lambda m, c=cam: self._add(self.images.setdefault(c, []), m),
                                     SENSOR_QOS)
        node.create_subscription(JointState, '/bc/obs/state',
                                 lambda m: self._add(self.states, m), SENSOR_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda m: self._add(self.diagnostics, m), 10)

    def _add(self, items, msg):
        with self.lock:
            items.append(msg)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def proprio(self, stamp: float, x: float, finger: float) -> None:
        js = JointState(name=JOINTS, position=[0.1 * i for i in range(7)] + [finger, finger])
        js.header.stamp = seconds_to_stamp(stamp)
        self.pub_joints.publish(js)
        pose = Pose(np.array([x, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
        self.pub_pose.publish(pose_to_msg(pose, 'base', seconds_to_stamp(stamp)))

    def frame(self, stamp: float, value: int, wrist: bool = False) -> None:
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[..., 0] = value
        self.pub_front.publish(image_to_msg(rgb, 'rgb8', 'front', seconds_to_stamp(stamp)))
        if wrist:
            self.pub_wrist.publish(compressed_image_to_msg(rgb, 'rgb8', 'wrist',
                                                           seconds_to_stamp(stamp), 'jpeg', 95))


def wait_subscribed(rig):
    assert wait_for(lambda: rig.pub_front.get_subscription_count() > 0
                    and rig.pub_pose.get_subscription_count() > 0, 10)


def test_images_and_state_come_out_synchronized(probe, tmp_path):
    spec = make_spec(cameras=[CameraSpec('front', 16, 24)],
                     state_keys=('ee_position', 'gripper', 'joint_positions'))
    write_model(tmp_path, spec)
    # generous waits: on a loaded machine DDS may deliver the bracketing sample late
    rig = Rig(probe, tmp_path, sync_wait=0.5, max_age=2.0)
    wait_subscribed(rig)
    published = []
    for k in range(40):
        t = rig.now()
        # proprioception at t - 10 ms and t + 10 ms brackets the frame stamped t - 5 ms
        rig.proprio(t - 0.010, x=0.40, finger=0.04)
        rig.proprio(t + 0.010, x=0.44, finger=0.0)
        rig.frame(t - 0.005, value=100 + k)
        published.append(t - 0.005)
        if wait_for(lambda: len(rig.states) >= 3 and len(rig.images.get('front', [])) >= 3, 0.05):
            break
    assert wait_for(lambda: len(rig.states) >= 3 and len(rig.images.get('front', [])) >= 3, 10)
    def key(msg):
        return msg.header.stamp.sec, msg.header.stamp.nanosec
    assert wait_for(lambda: {key(m) for m in rig.states} & {key(m) for m in rig.images['front']},
                    10)
    with rig.lock:
        by_stamp = {key(m): m for m in rig.images['front']}
        state = [m for m in rig.states if key(m) in by_stamp][-1]
    image = by_stamp[key(state)]  # identical stamps
    assert image.encoding == 'rgb8' and (image.height, image.width) == (16, 24)
    rgb = image_msg_to_rgb8(image)
    assert rgb[..., 1].max() == 0 and rgb[..., 0].min() >= 100
    assert state.name[:4] == ['ee_position.0', 'ee_position.1', 'ee_position.2', 'gripper']
    values = dict(zip(state.name, state.position))
    # interpolated to the frame stamp: 1/4 of the way from 0.40 to 0.44, fingers 0.04 → 0
    # (float64 epoch seconds resolve 0.2 µs: 1e-4 of the 20 ms interval is plenty)
    assert values['ee_position.0'] == pytest.approx(0.41, abs=1e-5)
    assert values['gripper'] == pytest.approx(0.75, abs=1e-4)
    assert values['joint_positions.3'] == pytest.approx(0.3)
    assert min(abs(stamp_to_seconds(state.header.stamp) - s) for s in published) < 1e-6


def test_compressed_second_camera_and_diagnostics(probe, tmp_path):
    spec = make_spec(cameras=[CameraSpec('front', 16, 16), CameraSpec('wrist', 8, 8)],
                     state_keys=('ee_position',))
    write_model(tmp_path, spec)
    rig = Rig(probe, tmp_path, compressed_cameras=['wrist'], diagnostics_rate_hz=5.0)
    wait_subscribed(rig)
    assert wait_for(lambda: rig.pub_wrist.get_subscription_count() > 0, 10)
    for _ in range(60):
        t = rig.now()
        rig.proprio(t - 0.01, 0.4, 0.04)
        rig.proprio(t + 0.01, 0.4, 0.04)
        rig.frame(t, value=200, wrist=True)
        if wait_for(lambda: len(rig.images.get('wrist', [])) >= 2, 0.05):
            break
    assert wait_for(lambda: len(rig.images.get('wrist', [])) >= 2, 10)
    wrist = image_msg_to_rgb8(rig.images['wrist'][-1])
    assert wrist.shape == (8, 8, 3) and abs(int(wrist[..., 0].mean()) - 200) < 8
    assert wait_for(lambda: any(s.name.startswith('observation_node') for d in rig.diagnostics
                                for s in d.status), 10)
    with rig.lock:
        status = [s for d in rig.diagnostics for s in d.status
                  if s.name.startswith('observation_node')][-1]
    keys = {kv.key for kv in status.values}
    assert {'front.rate_hz', 'wrist.age_median_s', 'current_pose.skew_max_s'} <= keys


def test_camera_missing_from_the_configuration_refuses_to_start(rclpy_context, tmp_path):
    from bc_robot.nodes.observation_node import ObservationNode
    write_model(tmp_path, make_spec(cameras=[CameraSpec('wrist', 16, 16)]))
    with pytest.raises(ValueError, match=r"needs camera\(s\) \['wrist'\].*\['front'\]"):
        ObservationNode(parameter_overrides=[Parameter('model', value=str(tmp_path)),
                                             Parameter('cameras', value=['front'])])


def test_simulation_only_state_key_refuses_to_start(rclpy_context, tmp_path):
    from bc_robot.nodes.observation_node import ObservationNode
    write_model(tmp_path, make_spec(state_keys=('ee_position', 'gripper', 'sim_objects')))
    with pytest.raises(ValueError, match=r"state key\(s\) \['sim_objects'\].*no source"):
        ObservationNode(parameter_overrides=[Parameter('model', value=str(tmp_path))])


def test_stamps_round_as_a_whole_at_second_boundaries():
    """Sim time summed from 1 ms steps lands just below whole seconds; its stamp must not
    fall back a second (sim_arm's /clock once went 1.999 → 1.0 → 2.001, and a half-speed
    recording logged a frame a second early)."""
    for whole in (1.0, 2.0, 3.0, 1000.0):
        below = float(np.nextafter(whole, 0.0))
        stamp = seconds_to_stamp(below)
        assert (stamp.sec, stamp.nanosec) == (int(whole), 0)
    t, previous = 0.0, -1.0
    for _ in range(5000):
        t += 0.001
        stamp = seconds_to_stamp(t)
        assert 0 <= stamp.nanosec < 1_000_000_000
        assert stamp_to_seconds(stamp) == pytest.approx(t, abs=1e-9)
        assert stamp_to_seconds(stamp) > previous
        previous = stamp_to_seconds(stamp)
