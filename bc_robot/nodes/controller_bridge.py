"""controller_bridge: the one path from policy/teleop targets to the arm's controller.

Thin wiring around `bc_robot.core.bridge.BridgeCore` (authority, watchdog, e-stop) and
`bc_robot.core.gate` (the safety rules): see docs/bridge.md for topics and behaviour.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import SetBool

from bc_robot.core.bridge import (MODE_LEVELS, POLICY, SOURCES, TELEOP, BridgeCore, Mode,
                                  RecentStats)
from bc_robot.core.bridge_settings import (BRIDGE_SCHEMA, config_from_params, limits_from_params,
                                           updated_limits)
from bc_robot.core.gate import GateRejection
from bc_robot.core.pacing import MAX_SPIN_FRACTION, PacedLoop
from bc_robot.graph import READY_KEY, ready_value
from bc_robot.nodes.common import (COMMAND_QOS, LATCHED_QOS, OK, SENSOR_QOS, WARN,
                                   DiagnosticsPublisher, PacedSpinning, declare_parameters,
                                   diagnostic_status, pose_to_msg, run, stamp_to_seconds)

SWITCH_INTERVAL_S = 0.0002


class ControllerBridge(PacedSpinning, Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('controller_bridge', **kwargs)
        p = self._params = declare_parameters(self, BRIDGE_SCHEMA, self._on_limits)
        self._limits = limits_from_params(p)
        config = config_from_params(p)
        self._core = BridgeCore(self._limits, config)
        self._lock = threading.Lock()
        self._tick_cost = RecentStats()
        self._tick_period = RecentStats()
        self._last_tick_wall: float | None = None
        self._published_mode: tuple[Mode, str] | None = None
        self._tick_errors = 0
        self._last_logged: dict[tuple[str, str], float] = {}

        inputs = MutuallyExclusiveCallbackGroup()
        housekeeping = MutuallyExclusiveCallbackGroup()
        self._subs = {}
        for source in SOURCES:
            self._subs[source] = (
                self.create_subscription(PoseStamped, p[f'{source}_target_topic'],
                                         lambda m, s=source: self._on_target(s, m), COMMAND_QOS,
                                         callback_group=inputs),
                self.create_subscription(Float64, p[f'{source}_gripper_topic'],
                                         lambda m, s=source: self._on_gripper(s, m), COMMAND_QOS,
                                         callback_group=inputs))
        self.create_subscription(Bool, p['intervention_topic'], self._on_intervention,
                                 LATCHED_QOS, callback_group=inputs)
        self.create_subscription(PoseStamped, p['measured_pose_topic'], self._on_measured,
                                 SENSOR_QOS, callback_group=inputs)
        self._pose_pub = self.create_publisher(PoseStamped, p['output_pose_topic'], COMMAND_QOS)
        self._gripper_pub = self.create_publisher(Float64, p['output_gripper_topic'], COMMAND_QOS)
        self._mode_pub = self.create_publisher(String, p['mode_topic'], LATCHED_QOS)
        self.create_service(SetBool, p['enable_service'], self._on_enable,
                            callback_group=housekeeping)
        self._diagnostics = DiagnosticsPublisher(self)
        self.create_timer(1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics,
                          callback_group=housekeeping)
        self.create_timer(1.0 / p['graph_check_rate_hz'], self._check_publishers,
                          callback_group=housekeeping)
        period = 1.0 / p['output_rate_hz']
        if p['output_clock'] == 'thread':
            self.loop = PacedLoop(period, self._tick, p['realtime_priority'],
                                   min(p['output_spin_us'] * 1e-6, MAX_SPIN_FRACTION * period),
                                   'bridge output')
        else:
            self.create_timer(period, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f'controller_bridge: {p["output_rate_hz"]:g} Hz to {p["output_pose_topic"]} '
            f'({"deadline loop" if self.loop else "rclpy timer"}), '
            f'enabled={config.start_enabled}, '
            f'step ≤ {self._limits.max_step_translation * 1000:.2f} mm / '
            f'{math.degrees(self._limits.max_step_rotation):.2f}° per tick')

    def _now(self) -> float | None:
        ns = self.get_clock().now().nanoseconds
        return ns * 1e-9 if ns > 0 else None  # sim time before the first /clock: no time yet

    # --- inputs --------------------------------------------------------------------------

    def _on_target(self, source: str, msg: PoseStamped) -> None:
        now = self._now()
        if now is None:
            return
        p, q = msg.pose.position, msg.pose.orientation
        stamp = stamp_to_seconds(msg.header.stamp) or None
        try:
            with self._lock:
                self._core.on_target(source, np.array([p.x, p.y, p.z]),
                                     np.array([q.x, q.y, q.z, q.w]), now, stamp,
                                     msg.header.frame_id)
        except GateRejection as exc:
            self._report_rejection(source, 'target', exc)

    def _on_gripper(self, source: str, msg: Float64) -> None:
        now = self._now()
        if now is None:
            return
        try:
            with self._lock:
                self._core.on_gripper(source, msg.data, now)
        except GateRejection as exc:
            self._report_rejection(source, 'gripper', exc)

    def _report_rejection(self, source: str, what: str, exc: GateRejection) -> None:
        """Log each rejection reason at most once a second (per reason, so a flood of one
        fault does not hide another); every one is counted in /diagnostics."""
        key = (source, exc.reason)
        now = time.monotonic()
        if now - self._last_logged.get(key, -math.inf) >= 1.0:
            self._last_logged[key] = now
            self.get_logger().warning(f'rejected {source} {what} ({exc.reason}): {exc}')

    def _on_measured(self, msg: PoseStamped) -> None:
        now = self._now()
        if now is None:
            return
        if msg.header.frame_id and msg.header.frame_id != self._params['frame_id']:
            self.get_logger().error(f'measured pose in frame {msg.header.frame_id!r}, expected '
                                    f'{self._params["frame_id"]!r}: ignored',
                                    throttle_duration_sec=5.0)
            return
        p, q = msg.pose.position, msg.pose.orientation
        with self._lock:
            ok = self._core.on_measured(np.array([p.x, p.y, p.z]),
                                        np.array([q.x, q.y, q.z, q.w]), now)
        if not ok:
            self.get_logger().error('measured pose is not a valid pose: ignored',
                                    throttle_duration_sec=5.0)

    def _on_intervention(self, msg: Bool) -> None:
        with self._lock:
            self._core.on_intervention(bool(msg.data))
        self.get_logger().info(f'authority: {TELEOP if msg.data else POLICY}')

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        now = self._now()
        with self._lock:
            if request.data:
                ok, message = self._core.enable(now) if now is not None else (False, 'no clock')
            else:
                ok, message = self._core.disable()
        if request.data:
            self.get_logger().info(f'enable: {message}')
        else:
            self.get_logger().warning(f'e-stop: {message}')
        response.success, response.message = ok, message
        return response

    def _check_publishers(self) -> None:
        counts = {source: max(self.count_publishers(sub.topic_name) for sub in subs)
                  for source, subs in self._subs.items()}
        with self._lock:
            for source, count in counts.items():
                self._core.set_publisher_count(source, count)

    # --- output --------------------------------------------------------------------------

    def _tick(self) -> None:
        try:
            self._tick_once()
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the output loop silently
            self._tick_errors += 1
            self.get_logger().error(f'output tick failed: {exc!r}', throttle_duration_sec=1.0)

    def _tick_once(self) -> None:
        started = time.perf_counter()
        clock_now = self.get_clock().now()  # ROS time: sim time under use_sim_time
        if clock_now.nanoseconds <= 0:
            return  # sim time before the first /clock
        now = clock_now.nanoseconds * 1e-9
        with self._lock:
            out = self._core.tick(now)
            mode = (out.mode.value, self._core.mode_reason)
            active = self._core.active
        cost = time.perf_counter() - started
        if out.pose is not None:
            self._pose_pub.publish(pose_to_msg(out.pose, self._params['frame_id'],
                                               clock_now.to_msg()))
        if out.gripper is not None:
            self._gripper_pub.publish(Float64(data=float(out.gripper)))
        self._tick_cost.add(cost)
        if self._last_tick_wall is not None:
            self._tick_period.add(started - self._last_tick_wall)
        self._last_tick_wall = started
        if (out.mode, active) != self._published_mode:
            self._announce(out.mode, mode[1], active, now)
        self._published_mode = (out.mode, active)

    def _announce(self, mode: Mode, reason: str, active: str, now: float) -> None:
        level = MODE_LEVELS[mode]
        text = f'mode {mode.value}: {reason}'
        # rclpy ties a severity to each call site, hence one call per level.
        if level == OK:
            self.get_logger().info(text)
        elif level == WARN:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)
        self._mode_pub.publish(String(data=json.dumps(
            {'mode': mode.value, 'reason': reason, 'active_source': active, 'time': now})))

    def _publish_diagnostics(self) -> None:
        now = self._now()
        if now is None:
            return
        with self._lock:
            values = self._core.report(now)
            mode = self._core.mode
        for name, stats in (('tick_cost_ms', self._tick_cost),
                            ('tick_period_ms', self._tick_period)):
            for key, value in stats.summary().items():
                values[f'{name}.{key}'] = value * 1000.0
        values['missed_ticks'] = self.loop.missed if self.loop else 0
        values['tick_errors'] = self._tick_errors
        # ready: a valid measured pose and no fault (a DISABLED bridge holds, awaiting enable)
        values[READY_KEY] = ready_value(mode not in (Mode.WAITING, Mode.FROZEN, Mode.CONFLICT))
        self._diagnostics.publish([diagnostic_status(
            f'{self.get_name()}: bridge', 'bc_robot', MODE_LEVELS[mode],
            f'{mode.value}: {values["reason"]}', values)])

    def _on_limits(self, changes) -> None:
        self._limits = updated_limits(self._limits, changes)
        with self._lock:
            self._core.set_limits(self._limits)
        self.get_logger().info(f'limits changed: {changes}')


def main(args=None) -> int:
    # The output thread must get the GIL within a fraction of a tick when its deadline comes;
    # CPython's default 5 ms switch interval would let an executor thread delay it that long.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run(lambda: ControllerBridge(), args)


if __name__ == '__main__':
    sys.exit(main())
