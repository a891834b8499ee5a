"""teleop_node: SpaceMouse/gamepad teleoperation, the intervention pedal, episodes and
HG-DAgger recording. Thin wiring around `bc_robot.core.teleop` (input → target),
`bc_robot.core.authority` (pedal, who drives, episodes) and `bc_robot.core.dart`; episode
services live in `episode_control`, the recorder in `episode_recorder`.
Topics, services and decisions: docs/teleop_recording.md.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, Twist
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Float64, String

from bc_robot.core.authority import Authority, CommandedPose, Transition
from bc_robot.core.dart import DartNoise
from bc_robot.core.params import ParamSchema
from bc_robot.core.teleop import (ZERO, ButtonEdges, TeleopIntegrator, command_from_joy,
                                  command_from_twist)
from bc_robot.nodes.common import (COMMAND_QOS, ERROR, LATCHED_QOS, OK, SENSOR_QOS, WARN,
                                   DiagnosticsPublisher, declare_parameters, diagnostic_status,
                                   pose_from_msg, pose_to_msg, run, seconds_to_stamp,
                                   stamp_to_seconds)
from bc_robot.nodes.episode_control import EpisodeControl
from bc_robot.nodes.episode_recorder import EpisodeRecorder
from bc_robot.nodes.teleop_settings import (RECORDING_PARAMS, TELEOP_PARAMS, dart_config,
                                            diagnostics_for, pedal_config, teleop_config)
from bc_robot.recording.episode import model_info

SCHEMA = ParamSchema(TELEOP_PARAMS + RECORDING_PARAMS)


class TeleopNode(Node):
    latched_qos = LATCHED_QOS

    def __init__(self, **kwargs) -> None:
        super().__init__('teleop_node', **kwargs)
        p = self.p = declare_parameters(self, SCHEMA, self._on_params)
        self.teleop = TeleopIntegrator(teleop_config(p))
        self.authority = Authority(p['mode'], pedal_config(p), p['policy_timeout'])
        self.commanded = CommandedPose(p['anchor_timeout'])
        self.dart = DartNoise(dart_config(p))
        self.model = model_info(p['model']) if p['model'] else {}
        self.lock = threading.RLock()
        self.task_state: dict = {}
        self.periods: deque = deque(maxlen=500)
        self.counts = {'invalid_input': 0, 'ticks_without_pose': 0, 'recording_errors': 0}
        self._edges = ButtonEdges()
        self._pedal_raw = {'joy': False, 'bool': False}
        self._last_tick: float | None = None
        self._last_publish: float | None = None

        self.episodes = EpisodeControl(self)
        control = MutuallyExclusiveCallbackGroup()
        other = MutuallyExclusiveCallbackGroup()

        def sub(msg_type, topic, callback, qos, group=control):
            if topic:
                self.create_subscription(msg_type, topic, callback, qos, callback_group=group)
        # buttons and the pedal are edges: a lost release must not be possible (joy_node and
        # spacenav publish reliable); best_effort for drivers that only offer that
        device = COMMAND_QOS if p['input_reliability'] == 'reliable' else SENSOR_QOS
        sub(Twist, p['twist_topic'], self._on_twist, device)
        sub(Joy, p['joy_topic'], lambda m: self._on_joy(m, True), device)
        if p['pedal_joy_topic'] != p['joy_topic']:
            sub(Joy, p['pedal_joy_topic'], lambda m: self._on_joy(m, False), device)
        sub(Bool, p['pedal_topic'], lambda m: self._on_pedal('bool', m.data), device)
        sub(PoseStamped, p['commanded_pose_topic'],
            lambda m: self.commanded.set_commanded(pose_from_msg(m), self.now()), COMMAND_QOS)
        sub(Float64, p['commanded_gripper_topic'],
            lambda m: self.commanded.set_gripper(m.data), COMMAND_QOS)
        sub(PoseStamped, p['current_pose_topic'],
            lambda m: self.commanded.set_measured(pose_from_msg(m), self.now()), SENSOR_QOS)
        sub(PoseStamped, p['policy_target_topic'], self._on_policy, COMMAND_QOS)
        sub(String, p['task_state_topic'], self._on_task_state, LATCHED_QOS, other)
        sub(DiagnosticArray, '/diagnostics', self.episodes.on_diagnostics, 10, other)
        self._target_pub = self.create_publisher(PoseStamped, p['teleop_target_topic'], COMMAND_QOS)
        self._label_pub = self.create_publisher(PoseStamped, p['teleop_label_topic'], COMMAND_QOS)
        self._gripper_pub = self.create_publisher(Float64, p['teleop_gripper_topic'], COMMAND_QOS)
        self._intervention_pub = self.create_publisher(Bool, p['intervention_topic'], LATCHED_QOS)
        self._diagnostics = DiagnosticsPublisher(self)
        self.recorder = EpisodeRecorder(self, p, self.episodes.metadata)
        self.recorder.on_error = self.episodes.on_recording_error
        self.create_timer(1.0 / p['rate_hz'], self._tick, callback_group=control)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=other)
        self._intervention_pub.publish(Bool(data=self.authority.human))
        self.episodes.publish_state()
        self.get_logger().info(
            f'teleop_node: mode {p["mode"]}, {p["rate_hz"]:g} Hz, pedal {p["pedal_style"]}, '
            f'recording {"to " + str(self.recorder.output_dir) if p["record"] else "off"}')

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---- inputs ----
    def _on_twist(self, msg: Twist) -> None:
        if self.p['motion_source'] == 'twist':
            lin, ang = msg.linear, msg.angular
            self._set_command(lambda c: command_from_twist((lin.x, lin.y, lin.z),
                                                           (ang.x, ang.y, ang.z), c))

    def _set_command(self, build) -> None:
        now = self.now()
        with self.lock:
            try:
                command = build(self.teleop.config)
            except ValueError as exc:
                self.counts['invalid_input'] += 1
                self.get_logger().warning(f'ignored teleop input (arm holds): {exc}',
                                          throttle_duration_sec=2.0)
                command = ZERO
            self.teleop.set_command(command, now)

    def _on_joy(self, msg: Joy, main: bool) -> None:
        p, buttons = self.p, list(msg.buttons)
        if main:
            if p['motion_source'] == 'joy':
                self._set_command(lambda c: command_from_joy(list(msg.axes), c))
            pressed = self._edges.update(buttons)
            if p['gripper_button'] in pressed:
                with self.lock:
                    self.teleop.toggle_gripper()
            if p['episode_button'] in pressed:
                self.episodes.action('stop' if self.episodes.recording else 'start', wait=False)
            for key, action in (('success_button', 'mark_success'),
                                ('failure_button', 'mark_failure')):
                if p[key] in pressed:
                    self.episodes.action(action, wait=False)
        if not main or p['pedal_joy_topic'] in ('', p['joy_topic']):
            held = ButtonEdges.held(buttons, p['pedal_button'])
            if held is not None:
                self._on_pedal('joy', held)

    def _on_pedal(self, source: str, down: bool) -> None:
        now = self.now()
        with self.lock:
            self._pedal_raw[source] = bool(down)
            transition = self.authority.on_pedal(any(self._pedal_raw.values()), now)
            if transition is not None:
                self._apply_transition(transition)

    def _on_policy(self, msg: PoseStamped) -> None:
        now = self.now()
        self.authority.policy_seen(now)
        self.episodes.on_policy_target(stamp_to_seconds(msg.header.stamp), now)

    def _on_task_state(self, msg: String) -> None:
        try:
            state = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        if isinstance(state, dict):
            self.task_state = dict(state, _received=self.now())

    # ---- authority ----
    def _apply_transition(self, transition: Transition) -> None:
        """Lock held. On takeover the first human target is exactly the pose the arm was
        commanded to, published before the flag so the bridge has it when it switches."""
        if transition.human:
            self._anchor(transition.time)
            self.dart.reset()
            if self.teleop.anchored:  # no pose known yet (pedal at start-up): nothing to send
                self._publish_targets(transition.time)
        self._intervention_pub.publish(Bool(data=transition.human))
        closed = self.episodes.episodes.on_transition(transition)
        extra = {'policy_alive': transition.policy_alive}
        if closed is not None:
            extra['duration'] = closed.duration
        if transition.human and not transition.policy_alive:
            self.get_logger().warning('pedal pressed while no policy is running: you drive; '
                                      'on release the bridge holds the arm')
        self.episodes.event('intervention_start' if transition.human else 'intervention_end',
                            transition.time, **extra)
        self.episodes.publish_state()

    def _anchor(self, now: float) -> bool:
        pose, _source = self.commanded.anchor(now)
        if pose is None:
            return False
        self.teleop.anchor(pose, self.commanded.gripper, now)
        return True

    # ---- control tick ----
    def _tick(self) -> None:
        wall = time.monotonic()
        if self._last_tick is not None:
            self.periods.append(wall - self._last_tick)
        self._last_tick = wall
        now = self.now()
        with self.lock:
            transition = self.authority.tick(now)
            if transition is not None:
                self._apply_transition(transition)
            if not self.authority.human or not self.teleop.anchored:
                # the policy drives: follow the commanded pose, the anchor of a takeover
                if not self._anchor(now):
                    self.counts['ticks_without_pose'] += 1
                    return
            self._publish_targets(now)

    def _publish_targets(self, now: float) -> None:
        dt = 0.0 if self._last_publish is None else min(max(now - self._last_publish, 0.0), 0.1)
        self._last_publish = now
        human = self.authority.human
        clean = self.teleop.step(now, self.commanded.measured_fresh(now)) if human \
            else self.teleop.target
        executed = clean
        if human and self.dart.config.enabled:
            self.dart.step(dt)
            executed = self.dart.apply(clean)
        stamp, frame = seconds_to_stamp(now), self.p['frame_id']
        self._target_pub.publish(pose_to_msg(executed, frame, stamp))
        self._label_pub.publish(pose_to_msg(clean, frame, stamp))
        self._gripper_pub.publish(Float64(data=self.teleop.gripper))

    # ---- diagnostics / params / shutdown ----
    def _publish_diagnostics(self) -> None:
        with self.lock:
            self.episodes.publish_state()
            statuses = diagnostics_for(self, OK, WARN, ERROR)
        self._diagnostics.publish([diagnostic_status(*s) for s in statuses])

    def _on_params(self, changes: dict) -> None:
        with self.lock:
            self.p.update(changes)
            self.teleop.config = teleop_config(self.p)

    def close(self) -> None:
        """SIGINT/SIGTERM: finalize the episode being recorded, its bag and metadata."""
        try:
            with self.lock:
                if self.episodes.recording:
                    self.episodes.stop_recording(self.now(), 'shutdown', status='interrupted')
        finally:
            self.recorder.close()


def main(args: list[str] | None = None) -> int:
    # the control tick must get the GIL soon after its deadline even while the recorder
    # threads copy camera frames, not after CPython's default 5 ms switch interval
    sys.setswitchinterval(0.001)
    return run(lambda: TeleopNode(), args, num_threads=4)


if __name__ == '__main__':
    sys.exit(main())
