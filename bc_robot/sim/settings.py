"""Parameter schemas of the sim nodes and their conversion to the typed sim configs.

Kept out of the node files so the nodes stay wiring and the schemas can be unit tested.
"""
from __future__ import annotations

from typing import Any, Mapping

from bc_robot.core.params import ParamSchema, ParamSpec
from bc_robot.sim.controller import ImpedanceConfig
from bc_robot.sim.disturbance import NudgeConfig
from bc_robot.sim.expert import CorrectionConfig, ExpertConfig
from bc_robot.sim.runner import RunnerConfig
from bc_robot.sim.tasks import TASKS, TaskConfig
from bc_robot.sim.world import SimConfig

_defaults_task = TaskConfig()
_defaults_gain = ImpedanceConfig()
_defaults_nudge = NudgeConfig()

GAIN_PARAMS = ('translational_stiffness', 'rotational_stiffness', 'translational_damping',
               'rotational_damping', 'nullspace_stiffness', 'nullspace_damping',
               'max_position_error', 'max_rotation_error')
RANGE_PARAMS = ('cube_x', 'cube_y', 'cube_yaw', 'goal_distance', 'goal_x', 'goal_y',
                'marker_x', 'marker_y', 'marker_z')

_GAIN_TEXT = {
    'translational_stiffness': ('Cartesian stiffness K, translation (N/m)', 0.0, 5000.0),
    'rotational_stiffness': ('Cartesian stiffness K, rotation (N·m/rad)', 0.0, 300.0),
    'translational_damping': ('Cartesian damping D, translation (N·s/m)', 0.0, 1000.0),
    'rotational_damping': ('Cartesian damping D, rotation (N·m·s/rad)', 0.0, 50.0),
    'nullspace_stiffness': ('null-space pull toward the home posture (N·m/rad)', 0.0, 100.0),
    'nullspace_damping': ('null-space joint damping (N·m·s/rad)', 0.0, 50.0),
    'max_position_error': ('target position error clipped per tick to this norm (m)', 0.001, 1.0),
    'max_rotation_error': ('target rotation error clipped per tick to this angle (rad)', 0.01, 3.2),
}
_RANGE_TEXT = {
    'cube_x': 'push: cube centre x range [low, high] (m, base frame)',
    'cube_y': 'push: cube centre y range [low, high] (m)',
    'cube_yaw': 'push: cube yaw range [low, high] (rad)',
    'goal_distance': 'push: cube-to-goal distance range [low, high] (m)',
    'goal_x': 'push: the goal centre must fall in this x range (m)',
    'goal_y': 'push: the goal centre must fall in this y range (m)',
    'marker_x': 'reach: marker x range (m)',
    'marker_y': 'reach: marker y range (m)',
    'marker_z': 'reach: marker height range above the table (m)',
}

SIM_ARM_SCHEMA = ParamSchema([
    ParamSpec('task', _defaults_task.name, 'task to set up: reach (smoke) or push',
              choices=TASKS),
    ParamSpec('seed', 0, 'scene seed; episode k after a (re)set uses seed + k, so a reset '
              'after setting the same seed reproduces the scene', min_value=0,
              max_value=2**31 - 1, dynamic=True),
    ParamSpec('real_time_factor', 1.0, 'sim seconds per wall second (0 = unpaced, as fast '
              'as possible)', min_value=0.0, max_value=50.0, dynamic=True),
    ParamSpec('state_rate', 200.0, '/joint_states and /current_pose rate in sim time (Hz)',
              min_value=10.0, max_value=1000.0),
    ParamSpec('clock_rate', 250.0, '/clock publish rate in sim time (Hz)', min_value=10.0,
              max_value=1000.0),
    ParamSpec('task_state_rate', 20.0, '/sim/task_state rate in sim time (Hz)',
              min_value=10.0, max_value=200.0),
    ParamSpec('camera_rate', 15.0, 'camera frame rate in sim time (Hz); 0 disables rendering',
              min_value=0.0, max_value=60.0),
    ParamSpec('cameras', ['front', 'wrist'], 'cameras to render (model camera names)',
              item_type=str),
    ParamSpec('image_width', 320, 'camera image width (px)', min_value=16, max_value=1280),
    ParamSpec('image_height', 240, 'camera image height (px)', min_value=16, max_value=960),
    ParamSpec('render_samples', 0, 'multisample anti-aliasing samples per pixel (0: about half '
              'the render time on a CPU, so fresher frames; 4: MuJoCo\'s smoother default)',
              min_value=0, max_value=16),
    *[ParamSpec(name, float(getattr(_defaults_gain, name)), text, min_value=lo, max_value=hi,
                dynamic=True) for name, (text, lo, hi) in _GAIN_TEXT.items()],
    *[ParamSpec(name, [float(v) for v in getattr(_defaults_task, name)], text,
                min_value=-3.5, max_value=3.5) for name, text in _RANGE_TEXT.items()],
    ParamSpec('success_radius', _defaults_task.success_radius, 'success when the cube centre '
              '(push) or the TCP (reach) is within this distance of the goal (m)',
              min_value=0.001, max_value=0.2),
    ParamSpec('nudge_count', _defaults_nudge.count, 'push: nudges given to the cube per episode, '
              'each in a random direction (0 = none; for recording demonstrations that show '
              'a cube steered back onto its line, never for evaluation)', min_value=0,
              max_value=10),
    ParamSpec('nudge_window', list(_defaults_nudge.window), 'push: the nudges fall at random '
              'episode times in [start, end] (s)', min_value=0.0, max_value=600.0),
    ParamSpec('nudge_speed', list(_defaults_nudge.speed), 'push: speed given to the cube by '
              'a nudge, drawn from [low, high] (m/s; 0.3 slides it about 1 cm)',
              min_value=0.0, max_value=2.0),
    ParamSpec('base_frame', 'base', 'frame_id of /current_pose; targets in another frame are '
              'refused', allow_empty=False),
    ParamSpec('joint_states_topic', '/joint_states', 'arm + gripper joint states out',
              allow_empty=False),
    ParamSpec('current_pose_topic', '/current_pose', 'TCP pose out (PoseStamped)',
              allow_empty=False),
    ParamSpec('target_pose_topic', '/target_pose', 'impedance target in (PoseStamped)',
              allow_empty=False),
    ParamSpec('gripper_target_topic', '/gripper/target', 'gripper opening in (Float64, 1 = '
              'open)', allow_empty=False),
    ParamSpec('camera_topic_prefix', '/camera', 'images go to <prefix>/<camera>/image_raw and '
              'camera_info', allow_empty=False),
    ParamSpec('task_state_topic', '/sim/task_state', 'ground truth out (String, JSON, latched)',
              allow_empty=False),
    ParamSpec('reset_service', '/sim/reset', 'new episode (std_srvs/Trigger)',
              allow_empty=False),
    ParamSpec('clock_topic', '/clock', 'sim time out (rosgraph_msgs/Clock)', allow_empty=False),
])


def impedance_from_params(values: Mapping[str, Any]) -> ImpedanceConfig:
    return ImpedanceConfig(**{name: float(values[name]) for name in GAIN_PARAMS})


def task_from_params(values: Mapping[str, Any]) -> TaskConfig:
    return TaskConfig(name=values['task'], success_radius=float(values['success_radius']),
                      **{name: tuple(values[name]) for name in RANGE_PARAMS})


def sim_config_from_params(values: Mapping[str, Any]) -> SimConfig:
    """Typed, validated config; ValueError names the bad value."""
    return SimConfig(task=task_from_params(values), impedance=impedance_from_params(values),
                     seed=int(values['seed']),
                     nudges=NudgeConfig(int(values['nudge_count']), tuple(values['nudge_window']),
                                        tuple(values['nudge_speed'])))


_defaults_expert = ExpertConfig()
_defaults_correction = CorrectionConfig()
_defaults_runner = RunnerConfig()
EXPERT_MODES = ('direct', 'teleop', 'correction', 'watch')
EXPERT_PARAMS = ('max_speed', 'push_speed', 'noise', 'speed_variation', 'side_offset',
                 'side_back', 'behind_offset', 'plan_variation', 'lateral_variation')
CORRECTION_PARAMS = tuple(vars(_defaults_correction))

SIM_EXPERT_SCHEMA = ParamSchema([
    ParamSpec('mode', 'direct', 'direct: publish /target_pose + /gripper/target; teleop: '
              'publish /spacenav/twist + /spacenav/joy like a SpaceMouse driver; correction: '
              'watch, press the pedal and correct when the task goes wrong; watch: keep '
              'the pedal released whatever happens (evaluations of the policy alone)',
              choices=EXPERT_MODES),
    ParamSpec('episodes', 10, 'episodes to run (direct/teleop: the expert resets the sim '
              'itself); 0 = until stopped', min_value=0, max_value=1000000),
    ParamSpec('episode_timeout', _defaults_runner.timeout, 'sim seconds before an episode '
              'counts as failed', min_value=1.0, max_value=600.0),
    ParamSpec('control_rate', _defaults_runner.control_rate, 'command rate (Hz)',
              min_value=5.0, max_value=200.0),
    ParamSpec('seed', 0, 'seed of the expert\'s own randomness (side, speed, noise)',
              min_value=0, max_value=2**31 - 1),
    ParamSpec('side', 'random', 'push approach side: random per episode, left or right',
              choices=('random', 'left', 'right')),
    ParamSpec('max_speed', _defaults_expert.max_speed, 'free-space speed (m/s)',
              min_value=0.01, max_value=0.5),
    ParamSpec('push_speed', _defaults_expert.push_speed, 'pushing speed (m/s)',
              min_value=0.005, max_value=0.3),
    ParamSpec('noise', _defaults_expert.noise, 'human-like velocity noise, fraction of speed',
              min_value=0.0, max_value=1.0),
    ParamSpec('speed_variation', _defaults_expert.speed_variation, 'per-episode speed factor '
              'in 1 ± this', min_value=0.0, max_value=0.9),
    ParamSpec('side_offset', _defaults_expert.side_offset, 'push: the approach waypoint lies '
              'this far across the push line, on the episode\'s side (m; 0 = straight down '
              'behind the cube)', min_value=0.0, max_value=0.3),
    ParamSpec('side_back', _defaults_expert.side_back, 'push: ... and this far back along it '
              'from the cube centre (m)', min_value=0.0, max_value=0.3),
    ParamSpec('behind_offset', _defaults_expert.behind_offset, 'push: where the push starts, '
              'cube centre to paddle centre (m; the cube half-width plus the paddle\'s is '
              '0.036)', min_value=0.045, max_value=0.3),
    ParamSpec('plan_variation', _defaults_expert.plan_variation, 'push: per-episode factors '
              'in 1 ± this on side_offset, side_back and behind_offset (demonstrations that '
              'cross the region around the cube in many paths)', min_value=0.0,
              max_value=0.9),
    ParamSpec('lateral_variation', _defaults_expert.lateral_variation, 'push: each episode\'s '
              'push starts up to this far across the push line, either side (m), and steers '
              'back onto it', min_value=0.0, max_value=0.1),
    ParamSpec('off_plan_threshold', _defaults_correction.off_plan_threshold, 'correction: '
              'take over when the TCP is this far from both plans (m)', min_value=0.005,
              max_value=1.0),
    ParamSpec('stall_time', _defaults_correction.stall_time, 'correction: take over after '
              'this long without progress (s)', min_value=0.5, max_value=120.0),
    ParamSpec('min_progress', _defaults_correction.min_progress, 'correction: progress '
              'smaller than this does not count (m)', min_value=0.001, max_value=0.2),
    ParamSpec('min_correction_time', _defaults_correction.min_correction_time, 'correction: '
              'shortest pedal hold (s)', min_value=0.1, max_value=60.0),
    ParamSpec('release_distance', _defaults_correction.release_distance, 'correction: '
              'release once back this close to the plan (m)', min_value=0.001, max_value=0.5),
    ParamSpec('push_lateral', _defaults_correction.push_lateral, 'correction: take over '
              'when the paddle pushes the cube this far off its centre line (m), and hand back '
              'once pushing on it', min_value=0.001, max_value=0.5),
    ParamSpec('linear_scale', 0.15, 'teleop: m/s at full SpaceMouse deflection',
              min_value=0.01, max_value=1.0),
    ParamSpec('angular_scale', 0.6, 'teleop: rad/s at full SpaceMouse deflection',
              min_value=0.05, max_value=5.0),
    ParamSpec('summary_path', '', 'write a JSON summary of the episodes here after each one '
              '(empty: log only)'),
    ParamSpec('exit_when_done', False, 'shut the node down after the last episode (for '
              'scripts such as `bc-robot demo`)'),
    ParamSpec('target_pose_topic', '/target_pose', 'direct: target out', allow_empty=False),
    ParamSpec('gripper_target_topic', '/gripper/target', 'direct: gripper opening out',
              allow_empty=False),
    ParamSpec('current_pose_topic', '/current_pose', 'measured TCP pose in', allow_empty=False),
    ParamSpec('joint_states_topic', '/joint_states', 'measured joints in (gripper state)',
              allow_empty=False),
    ParamSpec('task_state_topic', '/sim/task_state', 'ground truth in', allow_empty=False),
    ParamSpec('reset_service', '/sim/reset', 'called before each direct/teleop episode',
              allow_empty=False),
    ParamSpec('twist_topic', '/spacenav/twist', 'teleop/correction: SpaceMouse twist out',
              allow_empty=False),
    ParamSpec('joy_topic', '/spacenav/joy', 'teleop/correction: buttons [gripper, episode, '
              'pedal] out', allow_empty=False),
])


def expert_from_params(values: Mapping[str, Any]) -> ExpertConfig:
    return ExpertConfig(**{name: float(values[name]) for name in EXPERT_PARAMS})


def correction_from_params(values: Mapping[str, Any]) -> CorrectionConfig:
    return CorrectionConfig(**{name: float(values[name]) for name in CORRECTION_PARAMS})


def runner_from_params(values: Mapping[str, Any]) -> RunnerConfig:
    return RunnerConfig(control_rate=float(values['control_rate']),
                        timeout=float(values['episode_timeout']))
