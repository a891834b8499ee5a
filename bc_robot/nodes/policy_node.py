"""policy_node: a policy artifact run in real time with action chunking.

The ONNX Runtime backend is loaded, checked against policy.json and the configured cameras,
and warmed up before anything is published. A control loop at the spec's rate publishes one
target per tick (on the thread that also runs the observation callbacks, between deadlines:
`core.pacing`); inference runs on the `ChunkRunner`'s background thread, never in the tick.
Executors, delay estimation and the takeover rules live in `core.chunking`; see
docs/policy.md for topics, parameters and behaviour.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64

from bc_robot.core.actions import ActionLayout
from bc_robot.core.chunking import ChunkRunner, make_executor
from bc_robot.core.delay import DelayEstimator
from bc_robot.core.pacing import MAX_SPIN_FRACTION, PacedLoop
from bc_robot.core.policy_settings import (POLICY_SCHEMA, delay_config, executor_config,
                                           runner_config)
from bc_robot.core.spec import IMAGE_INPUT_PREFIX, STATE_INPUT
from bc_robot.core.state import state_labels
from bc_robot.core.sync import ObservationAssembler, ObservationHistory
from bc_robot.nodes.common import (COMMAND_QOS, ERROR, LATCHED_QOS, OK, SENSOR_QOS, WARN,
                                   DiagnosticsPublisher, PacedSpinning, declare_parameters,
                                   diagnostic_status, pose_to_msg, run, seconds_to_stamp)
from bc_robot.nodes.image_msgs import image_msg_to_rgb8
from bc_robot.graph import READY_KEY, resolve_model, ready_value
from bc_robot.runtime.onnx_backend import OnnxBackend


class PolicyNode(PacedSpinning, Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('policy_node', **kwargs)
        p = self.p = declare_parameters(self, POLICY_SCHEMA, self._on_params)
        self.backend = OnnxBackend(resolve_model(p['model']), p['providers'],
                                   p['cameras'] or None, p['warmup'], p['threads'])
        spec = self.spec = self.backend.spec
        self.dt = 1.0 / spec.control_rate_hz
        self.layout = ActionLayout(spec.action_representation)
        executor = make_executor(executor_config(p, spec), self.layout,
                                 DelayEstimator(delay_config(p)), self.dt, spec.accepts_prefix)
        self.history = ObservationHistory(spec.history, self.dt)
        parts = [IMAGE_INPUT_PREFIX + c.name for c in spec.cameras]
        parts += [STATE_INPUT] if spec.state_keys else []
        self.assembler = ObservationAssembler(parts)
        self.labels = state_labels(spec.state_keys)
        self.runner = ChunkRunner(executor, self.backend, self.history, self._now,
                                  runner_config(p, spec))
        self.refused = 0
        self._reported = (0, 0, '', '')
        self._last_plan = -1.0

        sensors = MutuallyExclusiveCallbackGroup()
        prefix = p['obs_prefix'].rstrip('/')
        for cam in spec.cameras:
            self.create_subscription(Image, f'{prefix}/{cam.name}',
                                     lambda m, c=cam: self._on_image(c, m), SENSOR_QOS,
                                     callback_group=sensors)
        if spec.state_keys:
            self.create_subscription(JointState, f'{prefix}/state', self._on_state, SENSOR_QOS,
                                     callback_group=sensors)
        self.create_subscription(Bool, p['intervention_topic'], self._on_intervention,
                                 LATCHED_QOS, callback_group=sensors)
        # An axial action names an orientation up to a half turn: the one nearer the arm's.
        self._reference: np.ndarray | None = None
        if self.layout.uses_axial:
            self.create_subscription(PoseStamped, p['current_pose_topic'], self._on_pose,
                                     SENSOR_QOS, callback_group=sensors)
        self.pub_target = self.create_publisher(PoseStamped, p['target_topic'], COMMAND_QOS)
        self.pub_gripper = self.create_publisher(Float64, p['gripper_topic'], COMMAND_QOS)
        self.pub_chunk = self.create_publisher(PathMsg, p['chunk_topic'], COMMAND_QOS)
        self.diagnostics = DiagnosticsPublisher(self)
        self.create_timer(1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        clock = p['control_clock']
        if clock == 'auto':
            clock = 'timer' if self.get_parameter('use_sim_time').value else 'thread'
        self.timer_executor_threads = 4
        if clock == 'thread':
            self.loop = PacedLoop(self.dt, self._on_tick, p['realtime_priority'],
                                  min(p['control_spin_us'] * 1e-6, MAX_SPIN_FRACTION * self.dt),
                                  'policy control')
        else:
            self.create_timer(self.dt, self._on_tick,
                              callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f'policy {spec.name!r} on {self.backend.provider} (warm-up '
            f'{1e3 * max(self.backend.warmup_s, default=0):.1f} ms max): executor '
            f'{p["executor"]}, {spec.chunk_length} actions at {spec.control_rate_hz:g} Hz '
            f'({clock}), '
            f'history {spec.history}, prefix {spec.accepts_prefix}')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- observations --------------------------------------------------------------------
    def _add_part(self, part: str, stamp, value: np.ndarray) -> None:
        done = self.assembler.add(part, stamp.sec * 1_000_000_000 + stamp.nanosec, value)
        if done is not None:
            self.history.add(done[0] * 1e-9, done[1])

    def _on_image(self, camera, msg: Image) -> None:
        try:
            rgb = image_msg_to_rgb8(msg)
        except ValueError as exc:
            return self._refuse(f'{camera.name}: {exc}')
        if rgb.shape[:2] != (camera.height, camera.width):
            return self._refuse(f'{camera.name}: image {rgb.shape[1]}x{rgb.shape[0]} is not the '
                                f'policy size {camera.width}x{camera.height}')
        self._add_part(IMAGE_INPUT_PREFIX + camera.name, msg.header.stamp, np.array(rgb))

    def _on_state(self, msg: JointState) -> None:
        if list(msg.name) != self.labels:
            return self._refuse(f'state labels {list(msg.name)} are not {self.labels}')
        vector = np.asarray(msg.position, dtype=np.float32)
        if not np.all(np.isfinite(vector)):
            return self._refuse(f'state has a non-finite value: {vector.tolist()}')
        self._add_part(STATE_INPUT, msg.header.stamp, vector)

    def _on_pose(self, msg: PoseStamped) -> None:
        o = msg.pose.orientation
        q = np.array([o.x, o.y, o.z, o.w])
        if np.all(np.isfinite(q)) and np.linalg.norm(q) > 0.5:
            self._reference = q

    def _refuse(self, reason: str) -> None:
        self.refused += 1
        self.get_logger().warning(f'observation refused: {reason}', throttle_duration_sec=2.0)

    def _on_intervention(self, msg: Bool) -> None:
        if msg.data and not self.runner.paused:
            self.runner.pause()
            self.get_logger().info('operator took over: queue dropped')
        elif not msg.data and self.runner.paused:
            self.runner.resume(self._now())
            self.get_logger().info('policy has authority again: inferring afresh')

    # --- control -------------------------------------------------------------------------
    def _on_tick(self) -> None:
        try:
            self._tick()
        except Exception:  # noqa: BLE001 - Ctrl-C invalidates the context under the loop
            if self.context.ok():
                raise

    def _tick(self) -> None:
        now, wall = self._now(), time.monotonic()
        # The plan is for RViz/Foxglove: at most 10 Hz, and only while someone listens.
        want_plan = wall - self._last_plan >= 0.1 and self.pub_chunk.get_subscription_count() > 0
        out = self.runner.tick(now, wall, want_plan)
        action = out.action if out.action is not None else (
            out.hold if self.p['hold_on_idle'] else None)
        if action is None:
            return
        try:
            pose, gripper = self.layout.to_target(action, self._reference)
        except ValueError as exc:   # a blend of valid actions that is not one: the bridge holds
            self.get_logger().error(f'action refused, nothing published: {exc}',
                                    throttle_duration_sec=1.0)
            return
        stamp = seconds_to_stamp(now)
        self.pub_target.publish(pose_to_msg(pose, self.p['frame_id'], stamp))
        self.pub_gripper.publish(Float64(data=gripper))
        if out.planned is not None and len(out.planned):
            self._last_plan = wall
            path = PathMsg()
            path.header.frame_id, path.header.stamp = self.p['frame_id'], stamp
            path.poses, reference = [], pose.orientation
            for i, planned in enumerate(out.planned):
                try:
                    planned_pose = self.layout.to_target(planned, reference)[0]
                except ValueError:   # the plan is for display: its valid part is shown
                    break
                reference = planned_pose.orientation
                path.poses.append(pose_to_msg(planned_pose, self.p['frame_id'],
                                              seconds_to_stamp(now + i * self.dt)))
            self.pub_chunk.publish(path)

    def _on_params(self, changed: dict) -> None:
        if 'inject_delay_ms' in changed:
            self.runner.set_inject_delay(changed['inject_delay_ms'] / 1000.0)

    def _publish_diagnostics(self) -> None:
        stats = self.runner.stats()
        counters = stats['counters']
        values = {'executor': stats['executor'], 'provider': self.backend.provider,
                  'paused': self.runner.paused, **counters, 'refused_observations': self.refused,
                  **self.runner.diagnostic_values(stats)}
        idle = counters['idle_ticks'] - self._reported[0]
        bad = counters['invalid_chunks'] + counters['inference_errors'] - self._reported[1]
        if stats['last_error'] != self._reported[2] and stats['last_error']:
            self.get_logger().error(stats['last_error'])
        if stats['last_warning'] != self._reported[3] and stats['last_warning']:
            self.get_logger().warning(stats['last_warning'])
        self._reported = (counters['idle_ticks'], counters['invalid_chunks']
                          + counters['inference_errors'], stats['last_error'],
                          stats['last_warning'])
        level, message = OK, f'{stats["executor"]}: {counters["chunks"]} chunks'
        if self.loop is not None and self.loop.error is not None:
            level, message = ERROR, f'control loop stopped: {self.loop.error!r}'
        elif self.runner.paused:
            message = 'operator has authority: paused'
        elif bad:
            level, message = ERROR, f'{bad} chunks refused or failed: {stats["last_error"]}'
        elif idle:
            level, message = WARN, f'{idle} idle ticks since last report'
        # ready: model loaded and warm, and a chunk inferred from live observations (or
        # the operator has authority); a dead control loop is not ready
        values[READY_KEY] = ready_value((counters['chunks'] > 0 or self.runner.paused) and not (
            self.loop is not None and self.loop.error is not None))
        self.diagnostics.publish([diagnostic_status('policy_node: chunking', 'policy_node',
                                                    level, message, values)])

    def close(self) -> None:
        """Stop the inference thread, then write the instrumentation dump."""
        self.history.close()
        self.runner.close()
        if self.p['stats_path']:
            stats = self.runner.report()
            stats.update({'model': self.spec.name, 'provider': self.backend.provider,
                          'control_rate_hz': self.spec.control_rate_hz,
                          'chunk_length': self.spec.chunk_length,
                          'refused_observations': self.refused})
            path = Path(self.p['stats_path']).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stats, allow_nan=True))


def main(args=None) -> int:
    # The control tick must get the GIL back from the inference thread within a fraction of a
    # tick, not after CPython's default 5 ms switch interval.
    sys.setswitchinterval(0.0002)
    return run(lambda: PolicyNode(), args)


if __name__ == '__main__':
    sys.exit(main())
