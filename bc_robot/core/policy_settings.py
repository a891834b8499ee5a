"""Parameter schemas of observation_node and policy_node and their conversion to the typed
core configs. Kept out of the node files so the nodes stay wiring and every rule (ranges,
choices, the execute_horizon default) is unit tested without a ROS graph.
"""
from __future__ import annotations

from typing import Any, Mapping

from bc_robot.core.chunking import EXECUTORS, ExecutorConfig, RunnerConfig
from bc_robot.core.delay import DelayEstimatorConfig
from bc_robot.core.params import ParamSchema, ParamSpec
from bc_robot.core.spec import PolicySpec
from bc_robot.core.sync import SyncConfig

PROVIDER_CHOICES = ('auto', 'cpu', 'cuda', 'tensorrt')  # bc_robot.runtime.onnx_backend
ARM_JOINTS = [f'joint{i}' for i in range(1, 8)]
POSE_KEYS = ('ee_position', 'ee_rot6d', 'ee_quaternion')

OBSERVATION_SCHEMA = ParamSchema([
    ParamSpec('model', 'default', 'policy folder (policy.json + policy.onnx; a path or a folder '
              'name under the package share models/): cameras, sizes and state keys are read '
              'from it', allow_empty=False),
    ParamSpec('cameras', [], 'cameras this robot provides ([] = exactly the model\'s); the model '
              'must not need one that is missing', item_type=str),
    ParamSpec('compressed_cameras', [], 'cameras read as CompressedImage from '
              '<camera_topic>/compressed instead of Image', item_type=str),
    ParamSpec('camera_topic', '/camera/{camera}/image_raw', 'raw image topic pattern',
              allow_empty=False),
    ParamSpec('joint_states_topic', '/joint_states', 'arm + finger joint states in',
              allow_empty=False),
    ParamSpec('current_pose_topic', '/current_pose', 'TCP pose in (PoseStamped, base frame)',
              allow_empty=False),
    ParamSpec('output_prefix', '/bc/obs', 'publishes <prefix>/<camera> and <prefix>/state',
              allow_empty=False),
    ParamSpec('base_frame', 'base', 'frame /current_pose must be in ("" accepted)'),
    ParamSpec('arm_joints', ARM_JOINTS, 'arm joint names, in state order', item_type=str),
    ParamSpec('finger_joints', ['finger_joint1', 'finger_joint2'], 'finger joints whose mean '
              'position / finger_travel is the gripper opening', item_type=str),
    ParamSpec('finger_travel', 0.04, 'finger position (m) at a fully open gripper',
              min_value=1e-4, max_value=1.0),
    ParamSpec('max_skew', 0.04, 'largest stamp difference between the reference frame and any '
              'other input (s); further apart rejects the observation', min_value=0.0,
              max_value=1.0),
    ParamSpec('max_age', 0.25, 'a frame older than this when ready is dropped as stale (s)',
              min_value=0.001, max_value=10.0),
    ParamSpec('sync_wait', 0.04, 'how long a frame waits, from its arrival, for the other '
              "cameras' frames of its instant and for proprioception newer than its stamp (s)",
              min_value=0.0, max_value=1.0),
    ParamSpec('diagnostics_rate_hz', 1.0, '/diagnostics rate', min_value=0.1, max_value=20.0),
])


POLICY_SCHEMA = ParamSchema([
    ParamSpec('model', 'default', 'policy folder (policy.onnx + policy.json): a path, or a folder '
              'name under the package share models/', allow_empty=False),
    ParamSpec('cameras', [], "cameras this robot provides ([] = the model's); a model needing "
              'one that is missing is refused', item_type=str),
    ParamSpec('executor', 'rtc', 'how chunks become per-tick actions', choices=EXECUTORS),
    ParamSpec('execute_horizon', -1, 'async/rtc: infer again when this many actions remain '
              '(-1 = half the chunk)', min_value=-1, max_value=999),
    ParamSpec('delay_margin_steps', 2, 'async/rtc: ticks added to the delay estimate when '
              'deciding to infer', min_value=0, max_value=100),
    ParamSpec('async_registration', 0.5, 'async: a new chunk may shift by up to this many '
              'ticks beyond its delay alignment to continue the plan it replaces (0 = off)',
              min_value=0.0, max_value=2.0),
    ParamSpec('ensemble_m', 0.01, 'ensemble: weight exp(-m*i), i = 0 oldest', min_value=0.0,
              max_value=10.0),
    ParamSpec('ensemble_every', 1, 'ensemble: query every k ticks', min_value=1, max_value=1000),
    ParamSpec('delay_window', 30, 'delay estimator: samples in the sliding window',
              min_value=1, max_value=10000),
    ParamSpec('delay_percentile', 90.0, 'delay estimator: percentile of the window',
              min_value=0.0, max_value=100.0),
    ParamSpec('delay_warmup', 2, 'delay estimator: first samples evicted', min_value=0,
              max_value=100),
    ParamSpec('inject_delay_ms', 0.0, 'experiments: extra delay added to every inference (ms)',
              min_value=0.0, max_value=10000.0, dynamic=True),
    ParamSpec('max_age', 0.25, 'an observation older than this is not inferred on (s)',
              min_value=0.001, max_value=10.0),
    ParamSpec('fresh_observation', True, 'each inference waits for an observation stamped '
              'after it was requested'),
    ParamSpec('align_window_ms', 100.0, 'async/rtc: start an inference up to this much early '
              'when the camera frame it would use gets its first action out sooner after the '
              'frame was taken (frame-phase alignment; 0 = off) (ms)', min_value=0.0,
              max_value=1000.0),
    ParamSpec('providers', 'auto', 'ONNX Runtime providers: auto = CUDA if it loads, else CPU',
              choices=PROVIDER_CHOICES),
    ParamSpec('threads', 1, 'ONNX Runtime intra-op threads', min_value=1, max_value=64),
    ParamSpec('warmup', 3, 'inferences run before the first tick', min_value=0, max_value=100),
    ParamSpec('control_clock', 'auto', 'what paces the control tick: thread (absolute '
              'deadlines on the monotonic clock, observation callbacks on the same thread in '
              'between: lowest jitter), timer (rclpy timer on the node '
              'clock), auto = thread, or timer under use_sim_time', choices=('auto', 'thread',
                                                                             'timer')),
    ParamSpec('realtime_priority', 0, 'SCHED_FIFO priority of the control thread (0 = normal '
              'scheduling); needs CAP_SYS_NICE or an rtprio limit, else a warning',
              min_value=0, max_value=99),
    ParamSpec('control_spin_us', 0, 'thread clock: busy-wait this long before each deadline '
              'instead of sleeping (CPU for a wake-up without scheduler or GIL latency; at most '
              'a quarter period)', min_value=0, max_value=5000),
    ParamSpec('hold_on_idle', True, 'on a tick with no action ready, publish the last target '
              'again (hold) instead of nothing'),
    ParamSpec('obs_prefix', '/bc/obs', 'observation topics <prefix>/<camera>, <prefix>/state',
              allow_empty=False),
    ParamSpec('target_topic', '/bc/policy/target', 'target pose out', allow_empty=False),
    ParamSpec('gripper_topic', '/bc/policy/gripper', 'gripper opening out', allow_empty=False),
    ParamSpec('chunk_topic', '/bc/policy/chunk', 'current chunk out (nav_msgs/Path)',
              allow_empty=False),
    ParamSpec('intervention_topic', '/bc/intervention', 'operator takeover in (Bool, latched)',
              allow_empty=False),
    ParamSpec('current_pose_topic', '/current_pose', 'measured TCP pose in (PoseStamped): '
              "which of an axial action's two half-turn orientations is meant (read only for "
              'ee_pose_axial_gripper models)', allow_empty=False),
    ParamSpec('frame_id', 'base', 'frame of the targets', allow_empty=False),
    ParamSpec('stats_path', '', 'JSON instrumentation dump written on exit ("" = none)'),
    ParamSpec('diagnostics_rate_hz', 1.0, '/diagnostics rate', min_value=0.1, max_value=20.0),
])



def sync_config(p: Mapping[str, Any]) -> SyncConfig:
    return SyncConfig(p['max_skew'], p['max_age'], p['sync_wait'])


def executor_config(p: Mapping[str, Any], spec: PolicySpec) -> ExecutorConfig:
    """The executor settings for `spec`; ValueError names a horizon the chunk cannot hold."""
    horizon = p['execute_horizon'] if p['execute_horizon'] >= 0 else spec.chunk_length // 2
    if horizon >= spec.chunk_length:
        raise ValueError(f'parameter execute_horizon = {horizon} must be below the chunk length '
                         f'{spec.chunk_length} of policy {spec.name!r}')
    return ExecutorConfig(p['executor'], spec.chunk_length, horizon, p['delay_margin_steps'],
                          p['ensemble_m'], min(p['ensemble_every'], spec.chunk_length),
                          p['async_registration'])


def delay_config(p: Mapping[str, Any]) -> DelayEstimatorConfig:
    return DelayEstimatorConfig(p['delay_window'], p['delay_percentile'], p['delay_warmup'])


def runner_config(p: Mapping[str, Any], spec: PolicySpec) -> RunnerConfig:
    return RunnerConfig(1.0 / spec.control_rate_hz, p['max_age'], p['fresh_observation'],
                        p['inject_delay_ms'] / 1000.0, p['align_window_ms'] / 1000.0)
