"""policy_node in-process over real DDS: one target per tick from a code-built ONNX policy,
the chunk on /bc/policy/chunk, diagnostics, takeover and release, and the exit dump."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64

from bc_robot.core.pose import quat_angle
from bc_robot.core.state import state_labels
from bc_robot.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from bc_robot.runtime.testing_models import affine_function, make_spec, write_model
from bc_robot.sim.expert import down_quaternion
from conftest import wait_for


class Rig:
    def __init__(self, probe, model_dir, x=0.5, **params):
        from bc_robot.nodes.policy_node import PolicyNode
        overrides = [Parameter('model', value=str(model_dir))] + [
            Parameter(k, value=v) for k, v in params.items()]
        self.policy = PolicyNode(parameter_overrides=overrides)
        probe.add_node(self.policy)
        node = self.node = probe.node
        self.lock = threading.Lock()
        self.x = x
        self.targets, self.grippers, self.chunks, self.diagnostics = [], [], [], []
        self.pub_state = node.create_publisher(JointState, '/bc/obs/state', SENSOR_QOS)
        self.pub_intervention = node.create_publisher(Bool, '/bc/intervention', LATCHED_QOS)
        node.create_subscription(PoseStamped, '/bc/policy/target',
                                 lambda m: self._add(self.targets, (time.monotonic(), m)),
                                 COMMAND_QOS)
        node.create_subscription(Float64, '/bc/policy/gripper',
                                 lambda m: self._add(self.grippers, m.data), COMMAND_QOS)
        node.create_subscription(Path, '/bc/policy/chunk', lambda m: self._add(self.chunks, m),
                                 COMMAND_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda m: self._add(self.diagnostics, m), 10)
        self.labels = state_labels(('ee_position', 'gripper'))
        self.timer = node.create_timer(1 / 40, self._publish_state)

    def _add(self, items, value):
        with self.lock:
            items.append(value)

    def _publish_state(self):
        msg = JointState(name=self.labels, position=[self.x, 0.0, 0.3, 1.0])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_state.publish(msg)

    def count(self):
        with self.lock:
            return len(self.targets)


@pytest.fixture
def model(tmp_path):
    spec = make_spec(chunk_length=8, control_rate_hz=20.0, accepts_prefix=True)
    return write_model(tmp_path / 'model', spec, function='affine')


def close(probe, rig):
    probe.remove_node(rig.policy)
    rig.policy.close()
    rig.policy.destroy_node()


def test_publishes_the_policy_targets_and_its_chunk(probe, model, tmp_path):
    stats = tmp_path / 'stats.json'
    rig = Rig(probe, model, executor='rtc', stats_path=str(stats), diagnostics_rate_hz=4.0)
    try:
        assert wait_for(lambda: rig.count() >= 30, 20)
        with rig.lock:
            xs = [m.pose.position.x for _, m in rig.targets]
            frames = {m.header.frame_id for _, m in rig.targets}
        # constant observation at x = 0.5: every target is p + (i + 1) * 1 cm (or an RTC
        # blend of two of them), i = the tick's offset from the observation's tick
        assert all(0.5 + 0.01 - 1e-6 <= x <= 0.5 + 0.08 + 1e-6 for x in xs), xs
        assert frames == {'base'} and set(rig.grippers) == {1.0}
        assert wait_for(lambda: len(rig.chunks) >= 1, 5)
        path = rig.chunks[-1]
        assert 1 <= len(path.poses) <= 8 and path.header.frame_id == 'base'
        assert wait_for(lambda: any(s.name == 'policy_node: chunking'
                                    for d in rig.diagnostics for s in d.status), 10)
        with rig.lock:
            status = [s for d in rig.diagnostics for s in d.status
                      if s.name == 'policy_node: chunking'][-1]
        values = {kv.key: kv.value for kv in status.values}
        assert values['executor'] == 'rtc' and values['provider'] == 'CPUExecutionProvider'
        assert int(values['chunks']) >= 1 and 'obs_to_target_ms_p99' in values
    finally:
        close(probe, rig)
    dump = json.loads(stats.read_text())
    assert dump['counters']['ticks'] >= 30 and dump['executor'] == 'rtc'
    assert dump['series']['inference_s']['count'] >= 1
    assert len(dump['trace']['x']) == dump['counters']['ticks']


def test_takeover_stops_publishing_and_release_infers_afresh(probe, model):
    rig = Rig(probe, model, executor='async')
    try:
        assert wait_for(lambda: rig.count() >= 5, 20)
        rig.pub_intervention.publish(Bool(data=True))
        assert wait_for(lambda: rig.policy.runner.paused, 5)
        time.sleep(0.3)   # a tick already in progress may still publish once
        before = rig.count()
        time.sleep(0.5)
        assert rig.count() == before               # ten ticks: silence
        rig.x = 0.6                                # the operator moved the arm
        released = time.monotonic()
        rig.pub_intervention.publish(Bool(data=False))
        assert wait_for(lambda: rig.count() > before, 10)
        with rig.lock:
            after = [m.pose.position.x for t, m in rig.targets if t > released]
        # first target after release comes from an observation taken after it (x = 0.6)
        assert after and all(x > 0.6 for x in after), after
    finally:
        close(probe, rig)


def pointing_down(yaw_deg: float) -> np.ndarray:
    return down_quaternion(np.radians(yaw_deg))


def test_axial_targets_take_the_half_turn_nearest_the_measured_pose(probe, tmp_path):
    """An axial policy names its yaw only up to half a turn (170° = -10°): the node commands
    whichever is nearer the arm's measured orientation, never a needless half turn."""
    spec = make_spec(chunk_length=8, action_representation='ee_pose_axial_gripper')
    weights, bias = affine_function(spec, orientation=pointing_down(170.0))
    model = write_model(tmp_path / 'axial', spec, function='affine', weights=weights, bias=bias)
    rig = Rig(probe, model, executor='async')
    pub_pose = probe.node.create_publisher(PoseStamped, '/current_pose', SENSOR_QOS)

    def newest_target_is(yaw_deg):
        with rig.lock:
            if not rig.targets:
                return False
            o = rig.targets[-1][1].pose.orientation
        return quat_angle(np.array([o.x, o.y, o.z, o.w]), pointing_down(yaw_deg)) < 1e-3

    def measured(yaw_deg):
        msg = PoseStamped()
        msg.header.frame_id = 'base'
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = pointing_down(yaw_deg).tolist()
        return msg
    try:
        assert wait_for(lambda: newest_target_is(-10.0), 20)   # nothing measured yet
        for arm, target in ((150.0, 170.0), (-60.0, -10.0), (120.0, 170.0)):
            assert wait_for(lambda: (pub_pose.publish(measured(arm)) or
                                     newest_target_is(target)), 10), (arm, target)
    finally:
        close(probe, rig)


def test_execute_horizon_longer_than_the_chunk_is_refused(rclpy_context, model):
    from bc_robot.nodes.policy_node import PolicyNode
    with pytest.raises(ValueError, match='execute_horizon = 8 must be below the chunk length 8'):
        PolicyNode(parameter_overrides=[Parameter('model', value=str(model)),
                                        Parameter('execute_horizon', value=8)])
