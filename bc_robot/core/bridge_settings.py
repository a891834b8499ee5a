"""controller_bridge parameters: one typed schema, and the core objects built from it.

Pure (no rclpy) so the schema, its ranges and the config/limits built from a parameter set
are unit tested, and config/controller_bridge.yaml can be checked against it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from bc_robot.core.bridge import BridgeConfig
from bc_robot.core.gate import GateLimits
from bc_robot.core.params import ParamSchema, ParamSpec

# Limits an operator may tighten or loosen while the node runs (`ros2 param set`).
LIMIT_PARAMS = ('max_linear_speed', 'max_angular_speed', 'max_position_error',
                'max_orientation_error')


def _topic(name: str, default: str, description: str) -> ParamSpec:
    return ParamSpec(name, default, description, allow_empty=False)


BRIDGE_SCHEMA = ParamSchema([
    _topic('policy_target_topic', '/bc/policy/target', 'policy target (PoseStamped)'),
    _topic('policy_gripper_topic', '/bc/policy/gripper', 'policy gripper opening (Float64)'),
    _topic('teleop_target_topic', '/bc/teleop/target', 'teleop target (PoseStamped)'),
    _topic('teleop_gripper_topic', '/bc/teleop/gripper', 'teleop gripper opening (Float64)'),
    _topic('intervention_topic', '/bc/intervention',
           'Bool, TRANSIENT_LOCAL: true = teleop has authority, false = policy'),
    _topic('measured_pose_topic', '/current_pose', 'measured TCP pose (PoseStamped, base frame)'),
    _topic('output_pose_topic', '/target_pose',
           'target for the Cartesian impedance controller (CRISP default name)'),
    _topic('output_gripper_topic', '/gripper/target',
           'gripper opening command (Float64, 1 = open)'),
    _topic('mode_topic', '/bc/bridge/mode',
           'String (JSON), TRANSIENT_LOCAL: mode, reason and active source on every change'),
    _topic('enable_service', '/bc/bridge/enable',
           'SetBool: false = latched e-stop, true = re-enable from the measured pose'),
    _topic('frame_id', 'base', 'robot base frame: targets stamped in another frame are rejected'),
    ParamSpec('output_rate_hz', 100.0, 'rate of the output target and gripper command',
              1.0, 1000.0),
    ParamSpec('output_clock', 'thread',
              'output pacing: thread = one thread runs the input callbacks and ticks at '
              'absolute deadlines (low jitter); timer = an rclpy wall timer',
              choices=('thread', 'timer')),
    ParamSpec('realtime_priority', 0,
              'SCHED_FIFO priority of the output thread (0 = normal scheduling); needs '
              'CAP_SYS_NICE or an rtprio limit, else a warning and normal scheduling', 0, 99),
    ParamSpec('output_spin_us', 0,
              'thread clock: busy-wait this long before each deadline instead of sleeping '
              '(CPU for a wake-up without scheduler latency; at most a quarter period)',
              0, 5000),
    ParamSpec('workspace_min', [0.20, -0.40, 0.0], 'workspace box lower corner x, y, z (m, base)'),
    ParamSpec('workspace_max', [0.80, 0.40, 0.60], 'workspace box upper corner x, y, z (m, base)'),
    ParamSpec('max_linear_speed', 0.5,
              'largest target speed (m/s); the per-tick step is this / output_rate_hz',
              0.001, 3.0, dynamic=True),
    ParamSpec('max_angular_speed', 1.5, 'largest target angular speed (rad/s)', 0.001, 10.0,
              dynamic=True),
    ParamSpec('max_position_error', 0.10, 'largest target–measured distance (m)', 0.001, 1.0,
              dynamic=True),
    ParamSpec('max_orientation_error', 0.5, 'largest target–measured angle (rad)', 0.001, math.pi,
              dynamic=True),
    ParamSpec('quat_norm_tolerance', 0.01,
              'a quaternion whose norm is further than this from 1 is rejected; closer is '
              'normalized', 1e-9, 0.5),
    ParamSpec('stale_timeout', 0.2,
              's without a valid target from the active source before holding (STALE)',
              0.005, 10.0),
    ParamSpec('measured_timeout', 0.2, 's without a measured pose before freezing (FROZEN)',
              0.005, 10.0),
    ParamSpec('start_enabled', True,
              'start enabled (the sim default); false: hold until /bc/bridge/enable true'),
    ParamSpec('interpolate', True, 'interpolate between targets over the measured input period'),
    ParamSpec('diagnostics_rate_hz', 2.0, 'rate of /diagnostics', 0.1, 50.0),
    ParamSpec('graph_check_rate_hz', 10.0, 'rate of the publisher-count check on the inputs',
              0.5, 100.0),
])


def limits_from_params(p: Mapping[str, Any]) -> GateLimits:
    """GateLimits from validated parameters (ValueError names a bad workspace box)."""
    return GateLimits(workspace_min=tuple(p['workspace_min']),
                      workspace_max=tuple(p['workspace_max']),
                      max_linear_speed=p['max_linear_speed'],
                      max_angular_speed=p['max_angular_speed'],
                      max_position_error=p['max_position_error'],
                      max_orientation_error=p['max_orientation_error'],
                      quat_norm_tolerance=p['quat_norm_tolerance'],
                      output_rate_hz=p['output_rate_hz'])


def config_from_params(p: Mapping[str, Any]) -> BridgeConfig:
    return BridgeConfig(stale_timeout=p['stale_timeout'], measured_timeout=p['measured_timeout'],
                        start_enabled=p['start_enabled'], interpolate=p['interpolate'],
                        frame_id=p['frame_id'])


def updated_limits(limits: GateLimits, changes: Mapping[str, Any]) -> GateLimits:
    """Limits with the runtime-changeable ones replaced (others in `changes` are ignored)."""
    return dataclasses.replace(limits, **{k: v for k, v in changes.items() if k in LIMIT_PARAMS})
