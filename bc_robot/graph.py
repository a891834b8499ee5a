"""The node graphs (`deploy`, `record`) declared once.

`launch/*.launch.py` turn these declarations into launch_ros Nodes on machines with ROS 2
installed; `bc-robot launch` turns the same declarations into processes where launch_ros is
missing. Pure Python (no rclpy, no launch) so both paths, and the tests, share one source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = 'bc_robot'
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeDecl:
    """One node of a graph. `params` values may name a launch argument as '$arg'."""

    name: str
    executable: str
    only_if: str = ''  # launch argument that must be true for the node to start
    unless: str = ''   # launch argument that must be false for the node to start
    params: dict[str, str] = field(default_factory=dict)


# Robot-facing topics a user rewires with `<arg>:=/their/topic`; each becomes a remapping of
# the default name for every node, so no node needs its own copy of the setting.
TOPIC_ARGS = {
    'joint_states_topic': ('/joint_states', 'measured joint states (sensor_msgs/JointState)'),
    'current_pose_topic': ('/current_pose', 'measured end-effector pose in the base frame'),
    'target_pose_topic': ('/target_pose', "the impedance controller's target pose input"),
    'gripper_topic': ('/gripper/target', "the gripper's opening command input [0, 1]"),
    'front_camera_topic': ('/camera/front/image_raw', 'front camera image'),
    'wrist_camera_topic': ('/camera/wrist/image_raw', 'wrist camera image'),
}

LAUNCH_ARGS = [
    LaunchArg('model', 'default', 'policy folder (policy.onnx + policy.json): a path, or the '
              'name of a folder under the package share models/'),
    LaunchArg('params_file', '', 'extra parameter YAML applied to every node after the '
              'package defaults (keys: node name → ros__parameters)'),
    LaunchArg('sim', 'false', 'true: add the simulated arm and the scripted human',
              ('true', 'false')),
    LaunchArg('use_sim_time', 'false', 'every node follows /clock instead of wall time',
              ('true', 'false')),
    LaunchArg('log_level', 'info', 'log level of every node',
              ('debug', 'info', 'warn', 'error', 'fatal')),
    LaunchArg('output_dir', 'episodes', 'where episodes are recorded'),
    *[LaunchArg(name, default, description) for name, (default, description) in TOPIC_ARGS.items()],
]

GRAPHS: dict[str, list[NodeDecl]] = {
    'deploy': [
        NodeDecl('sim_arm', 'sim_arm', only_if='sim'),
        NodeDecl('sim_expert', 'sim_expert', only_if='sim', params={'mode': 'correction'}),
        NodeDecl('observation_node', 'observation_node', params={'model': '$model'}),
        NodeDecl('policy_node', 'policy_node', params={'model': '$model'}),
        NodeDecl('teleop_node', 'teleop_node',
                 params={'mode': 'dagger', 'output_dir': '$output_dir'}),
        NodeDecl('controller_bridge', 'controller_bridge'),
    ],
    'record': [
        NodeDecl('sim_arm', 'sim_arm', only_if='sim'),
        NodeDecl('sim_expert', 'sim_expert', only_if='sim', params={'mode': 'teleop'}),
        NodeDecl('teleop_node', 'teleop_node', params={'mode': 'demo', 'output_dir': '$output_dir'}),
        NodeDecl('controller_bridge', 'controller_bridge'),
    ],
}


@dataclass(frozen=True)
class ProcessPlan:
    """Everything needed to start one node, whichever launcher starts it."""

    name: str
    executable: str
    params_files: tuple[str, ...]
    params: dict[str, object]
    remappings: tuple[tuple[str, str], ...]
    log_level: str

    def ros_args(self) -> list[str]:
        args = ['--ros-args', '-r', f'__node:={self.name}', '--log-level', self.log_level]
        for path in self.params_files:
            args += ['--params-file', path]
        for key, value in self.params.items():
            args += ['-p', f'{key}:={_param_text(value)}']
        for src, dst in self.remappings:
            args += ['-r', f'{src}:={dst}']
        return args


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def share_dir() -> Path:
    """share/bc_robot of an installed package, or the source tree when run from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE))
        if (installed / 'config').is_dir():
            return installed
    except (ImportError, LookupError, ValueError, OSError):
        pass
    return REPO_ROOT


def resolve_model(model: str) -> str:
    """A path, or the name of a folder under share/models."""
    candidate = Path(os.path.expanduser(model))
    if candidate.is_dir() or os.sep in model or model.startswith('.'):
        return str(candidate.resolve())
    return str(share_dir() / 'models' / model)


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f'launch argument {name}:={text!r} is not true or false')


def parse_launch_args(items: list[str]) -> dict[str, str]:
    """`name:=value` items → values for every declared argument (defaults filled in)."""
    declared = {arg.name: arg for arg in LAUNCH_ARGS}
    values = {arg.name: arg.default for arg in LAUNCH_ARGS}
    for item in items:
        if ':=' not in item:
            raise ValueError(f'launch argument {item!r} must look like name:=value')
        name, value = item.split(':=', 1)
        if name not in declared:
            raise ValueError(f'unknown launch argument {name!r}; known: {", ".join(declared)}')
        if declared[name].choices and value not in declared[name].choices:
            raise ValueError(f'launch argument {name}:={value!r} is not one of '
                             f'{", ".join(declared[name].choices)}')
        values[name] = value
    return values


def plan_graph(graph: str, values: dict[str, str]) -> list[ProcessPlan]:
    """The processes of `graph` for the given launch argument values."""
    if graph not in GRAPHS:
        raise ValueError(f'unknown graph {graph!r}; known: {", ".join(GRAPHS)}')
    config = share_dir() / 'config'
    remappings = tuple((default, values[arg]) for arg, (default, _) in TOPIC_ARGS.items()
                       if values[arg] != default)
    use_sim_time = parse_bool('use_sim_time', values['use_sim_time'])
    plans = []
    for decl in GRAPHS[graph]:
        if decl.only_if and not parse_bool(decl.only_if, values[decl.only_if]):
            continue
        if decl.unless and parse_bool(decl.unless, values[decl.unless]):
            continue
        files = [str(config / f'{decl.name}.yaml')]
        if values['params_file']:
            files.append(str(Path(values['params_file']).expanduser().resolve()))
        params: dict[str, object] = {'use_sim_time': use_sim_time}
        for key, value in decl.params.items():
            if value.startswith('$'):
                value = values[value[1:]]
                if key == 'model':
                    value = resolve_model(value)
            params[key] = value
        plans.append(ProcessPlan(decl.name, decl.executable, tuple(files), params,
                                 remappings, values['log_level']))
    return plans
