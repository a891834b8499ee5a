"""teleop_node's parameter schema, the typed configs built from it, and its diagnostics —
kept apart so the node file stays wiring."""
from __future__ import annotations

from typing import Any

import numpy as np

from bc_robot.core.authority import PedalConfig
from bc_robot.core.dart import DartConfig
from bc_robot.core.params import ParamSpec
from bc_robot.core.teleop import TeleopConfig
from bc_robot.graph import READY_KEY, ready_value

T = 'topic'
TELEOP_PARAMS = [
    ParamSpec('mode', 'demo', 'demo: the human drives and demonstrations are recorded; '
              'dagger: the policy drives and the pedal hands control to the human',
              choices=('demo', 'dagger')),
    ParamSpec('rate_hz', 50.0, 'rate of /bc/teleop/target', min_value=1.0, max_value=1000.0),
    ParamSpec('frame_id', 'base', 'frame of the published targets', allow_empty=False),
    # inputs
    ParamSpec('twist_topic', '/spacenav/twist', f'{T}: Twist, components normalized to [-1, 1]'),
    ParamSpec('joy_topic', '/spacenav/joy', f'{T}: Joy with the buttons (and axes if motion_source=joy)'),
    ParamSpec('pedal_joy_topic', '', f'{T}: Joy of a separate pedal device; empty = joy_topic'),
    ParamSpec('pedal_topic', '/bc/pedal', f'{T}: std_msgs/Bool pedal (true = pressed); empty = off'),
    ParamSpec('input_reliability', 'reliable', 'QoS of SpaceMouse/Joy/pedal subscriptions: '
              'reliable (no lost button or pedal edge) or best_effort (for drivers that only '
              'publish best effort)', choices=('reliable', 'best_effort')),
    ParamSpec('commanded_pose_topic', '/target_pose', f'{T}: the bridge output = handover anchor'),
    ParamSpec('commanded_gripper_topic', '/gripper/target', f'{T}: the bridge gripper output'),
    ParamSpec('current_pose_topic', '/current_pose', f'{T}: measured TCP pose'),
    ParamSpec('policy_target_topic', '/bc/policy/target', f'{T}: policy output (liveness, latency)'),
    ParamSpec('task_state_topic', '/sim/task_state', f'{T}: task JSON for success labels; empty = off'),
    # outputs
    ParamSpec('teleop_target_topic', '/bc/teleop/target', f'{T}: executed human target (DART incl.)'),
    ParamSpec('teleop_label_topic', '/bc/teleop/label', f'{T}: the clean human command (label)'),
    ParamSpec('teleop_gripper_topic', '/bc/teleop/gripper', f'{T}: human gripper opening [0, 1]'),
    ParamSpec('intervention_topic', '/bc/intervention', f'{T}: Bool, true = human has authority'),
    ParamSpec('episode_state_topic', '/bc/episode/state', f'{T}: latched JSON state'),
    ParamSpec('episode_events_topic', '/bc/episode/events', f'{T}: JSON episode events'),
    ParamSpec('episode_service_prefix', '/bc/episode', 'prefix of the Trigger services',
              allow_empty=False),
    # mapping
    ParamSpec('motion_source', 'twist', 'twist (spacenav Twist) or joy (Joy axes, gamepads)',
              choices=('twist', 'joy')),
    ParamSpec('frame', 'base', 'velocity frame: base (robot base) or tool (TCP)',
              choices=('base', 'tool'), dynamic=True),
    ParamSpec('linear_scale', 0.15, 'm/s at full deflection', min_value=0.0, max_value=1.0,
              dynamic=True),
    ParamSpec('angular_scale', 0.6, 'rad/s at full deflection', min_value=0.0, max_value=3.0,
              dynamic=True),
    ParamSpec('deadband', 0.05, 'normalized deadband (rescaled outside)', min_value=0.0,
              max_value=0.9, dynamic=True),
    ParamSpec('axis_map', [0, 1, 2, 3, 4, 5], 'Joy axis per vx vy vz wx wy wz (-1 unused)',
              min_value=-1, max_value=63),
    ParamSpec('axis_signs', [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], '+1/-1 per component',
              min_value=-1.0, max_value=1.0),
    ParamSpec('input_timeout', 0.5, 's without input before the target holds (0 = never)',
              min_value=0.0, max_value=10.0),
    ParamSpec('max_lead', 0.10, 'm the target may lead the measured pose', min_value=0.0,
              max_value=1.0),
    ParamSpec('max_lead_angle', 0.5, 'rad the target may lead the measured pose',
              min_value=0.0, max_value=3.2),
    ParamSpec('reanchor_distance', 0.2, 'm: a measured pose this far from the target means the '
              'arm was moved (sim reset, e-stop): continue from it (0 = never)',
              min_value=0.0, max_value=2.0),
    ParamSpec('workspace_min', [0.20, -0.40, 0.0], 'workspace box min xyz (m, base)'),
    ParamSpec('workspace_max', [0.80, 0.40, 0.60], 'workspace box max xyz (m, base)'),
    # buttons (-1 disables)
    ParamSpec('gripper_button', 0, 'Joy button toggling the gripper', min_value=-1, max_value=63),
    ParamSpec('episode_button', 1, 'Joy button: start / stop an episode', min_value=-1,
              max_value=63),
    ParamSpec('pedal_button', 2, 'Joy button of the pedal', min_value=-1, max_value=63),
    ParamSpec('success_button', -1, 'Joy button: label success', min_value=-1, max_value=63),
    ParamSpec('failure_button', -1, 'Joy button: label failure', min_value=-1, max_value=63),
    # authority
    ParamSpec('pedal_style', 'hold', 'hold: down = human; toggle: each press flips',
              choices=('hold', 'toggle')),
    ParamSpec('pedal_release_delay', 0.15, 's released before a hold ends (absorbs chatter)',
              min_value=0.0, max_value=5.0),
    ParamSpec('pedal_toggle_debounce', 0.3, 's up before a toggle press counts',
              min_value=0.0, max_value=5.0),
    ParamSpec('policy_timeout', 0.5, 's without a policy target = no policy running',
              min_value=0.01, max_value=60.0),
    ParamSpec('anchor_timeout', 0.5, 's a commanded pose stays the handover anchor',
              min_value=0.01, max_value=60.0),
    # DART
    ParamSpec('dart_enabled', False, 'add bounded noise to the executed human target'),
    ParamSpec('dart_sigma_position', 0.005, 'm', min_value=0.0, max_value=0.05),
    ParamSpec('dart_sigma_rotation', 0.02, 'rad', min_value=0.0, max_value=0.3),
    ParamSpec('dart_max_position', 0.01, 'm bound', min_value=0.0, max_value=0.05),
    ParamSpec('dart_max_rotation', 0.05, 'rad bound', min_value=0.0, max_value=0.3),
    ParamSpec('dart_time_constant', 0.5, 's noise correlation time', min_value=0.01,
              max_value=10.0),
    ParamSpec('dart_seed', 0, 'noise seed (0 = random)', min_value=0, max_value=2**31 - 1),
]


RECORD_TOPICS = [
    '/camera/front/image_raw', '/camera/wrist/image_raw', '/joint_states', '/current_pose',
    '/target_pose', '/gripper/target', '/bc/policy/target', '/bc/policy/gripper',
    '/bc/teleop/target', '/bc/teleop/gripper', '/bc/teleop/label', '/bc/intervention',
    '/bc/episode/events', '/sim/task_state']

RECORDING_PARAMS = [
    ParamSpec('record', True, 'record an rosbag2 (MCAP) episode between start and stop'),
    ParamSpec('output_dir', '~/bc_robot/episodes', 'folder of episode folders', allow_empty=False),
    ParamSpec('record_topics', list(RECORD_TOPICS), 'absolute topic names recorded raw',
              allow_empty=False),
    ParamSpec('episode_prefix', '', 'episode folder prefix; empty = the task name'),
    ParamSpec('task', '', 'task label for episode.json; empty = taken from /sim/task_state',
              dynamic=True),
    ParamSpec('operator', '', 'operator name for episode.json', dynamic=True),
    ParamSpec('model', '', 'deployed model folder (policy.json + policy.onnx) for the metadata'),
    ParamSpec('auto_save', True, 'stop saves the episode; false: stop waits for save/discard',
              dynamic=True),
    ParamSpec('discard_mode', 'trash', 'discard moves to <output_dir>/.discarded or deletes',
              choices=('trash', 'delete')),
    ParamSpec('flush_period', 0.5, 'seconds between bag checkpoints (loss bound on a kill)',
              min_value=0.05, max_value=1.0),
    ParamSpec('max_queue_mb', 256, 'writer queue bound in MiB; beyond it messages are dropped '
              'and counted', min_value=1, max_value=16384),
    ParamSpec('min_free_mb', 64, 'stop recording cleanly below this much free disk (MiB)',
              min_value=0, max_value=1_000_000),
    ParamSpec('fsync', False, 'fsync at every checkpoint (survives power loss, slower)'),
    ParamSpec('stop_grace', 0.3, 's of in-flight messages still recorded after stop',
              min_value=0.0, max_value=5.0),
    ParamSpec('record_qos_depth', 100, 'subscription queue depth per recorded topic',
              min_value=1, max_value=10000),
    ParamSpec('ros_distro', '', 'typestore for message definitions; empty = $ROS_DISTRO or kilted'),
]


def teleop_config(p: dict[str, Any]) -> TeleopConfig:
    return TeleopConfig(
        linear_scale=p['linear_scale'], angular_scale=p['angular_scale'],
        deadband=p['deadband'], frame=p['frame'], motion_source=p['motion_source'],
        axis_map=tuple(p['axis_map']), axis_signs=tuple(p['axis_signs']),
        input_timeout=p['input_timeout'], max_lead=p['max_lead'],
        max_lead_angle=p['max_lead_angle'], reanchor_distance=p['reanchor_distance'],
        workspace_min=tuple(p['workspace_min']),
        workspace_max=tuple(p['workspace_max']))


def pedal_config(p: dict[str, Any]) -> PedalConfig:
    return PedalConfig(p['pedal_style'], p['pedal_release_delay'], p['pedal_toggle_debounce'])


def dart_config(p: dict[str, Any]) -> DartConfig:
    return DartConfig(
        enabled=p['dart_enabled'], sigma_position=p['dart_sigma_position'],
        sigma_rotation=p['dart_sigma_rotation'], max_position=p['dart_max_position'],
        max_rotation=p['dart_max_rotation'], time_constant=p['dart_time_constant'],
        seed=p['dart_seed'])


def diagnostics_for(node, ok: int, warn: int, error: int) -> list[tuple]:
    """(name, hardware_id, level, message, values) for the teleop and recorder statuses."""
    now = node.now()
    authority, teleop = node.authority, node.teleop
    periods = np.asarray(node.periods) * 1e3 if node.periods else np.zeros(1)
    nominal = 1e3 / node.p['rate_hz']
    level, message = ok, f'{authority.state.value}, {"human" if authority.human else "policy"} drives'
    if not teleop.anchored:
        level, message = warn, 'no commanded or measured pose yet: no target published'
    elif node.p['mode'] == 'dagger' and not authority.human and not authority.policy_alive(now):
        level, message = warn, 'AUTONOMOUS but no policy target arrives: the bridge holds'
    values = {'state': authority.state.value, 'authority': 'human' if authority.human else 'policy',
              'pedal': authority.pedal.down, 'pedal_bounces': authority.pedal.bounces,
              'pedal_ignored_demo_mode': authority.pedal_ignored,
              'policy_alive': authority.policy_alive(now),
              'input_age_s': teleop.command_age(now),
              'period_p50_ms': float(np.percentile(periods, 50)),
              'jitter_p99_ms': float(np.percentile(np.abs(periods - nominal), 99)),
              'jitter_max_ms': float(np.max(np.abs(periods - nominal))),
              'reanchors': teleop.reanchors, **node.counts,
              READY_KEY: ready_value(teleop.anchored)}  # ready: targets are published
    statuses = [(f'{node.get_name()}: teleop', 'teleop', level, message, values)]
    current = node.episodes.episodes.current
    writer = node.recorder.writers.get(current.name) if current else None
    rec_values: dict[str, Any] = {'episode': current.name if current else '',
                                  'status': current.status if current else 'none'}
    rec_level, rec_message = ok, 'idle'
    if writer is not None:
        report = writer.report()
        rec_values.update(queue_bytes=writer.queue_bytes, bytes_written=report['bytes_written'],
                          checkpoints=report['checkpoints'])
        for topic, counts in report['topics'].items():
            rec_values[f'{topic} received/written/dropped'] = \
                f'{counts["received"]}/{counts["written"]}/{counts["dropped"]}'
        dropped = sum(c['dropped'] for c in report['topics'].values())
        rec_message = 'recording' if writer.recording else 'finished'
        if dropped:
            rec_level, rec_message = warn, f'{rec_message}: {dropped} messages dropped'
        if writer.error:
            rec_level, rec_message = error, writer.error
    if node.recorder.tap is not None:
        rec_values['lost_in_transport'] = sum(node.recorder.tap.lost.values())
    rec_values[READY_KEY] = ready_value(rec_level != error)
    statuses.append((f'{node.get_name()}: recorder', 'recorder', rec_level, rec_message, rec_values))
    return statuses
