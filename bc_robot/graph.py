"""The node graphs (`deploy`, `record`) declared once.

`launch/*.launch.py` turn these declarations into launch_ros Nodes on machines with ROS 2
installed; `bc-robot launch` turns the same declarations into processes where launch_ros is
missing. Pure Python (no rclpy, no launch) so both paths, and the tests, share one source.
"""
from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

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
    schema: str = ''   # 'module:NAME' of the node's ParamSchema, to check parameter files


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
    LaunchArg('output_dir', '~/bc_robot/episodes', 'folder teleop_node records episodes into '
              '(demonstrations, and corrections while deployed)'),
    *[LaunchArg(name, default, description) for name, (default, description) in TOPIC_ARGS.items()],
]

_SIM_ARM = 'bc_robot.sim.settings:SIM_ARM_SCHEMA'
_SIM_EXPERT = 'bc_robot.sim.settings:SIM_EXPERT_SCHEMA'
_OBSERVATION = 'bc_robot.core.policy_settings:OBSERVATION_SCHEMA'
_POLICY = 'bc_robot.core.policy_settings:POLICY_SCHEMA'
_TELEOP = 'bc_robot.nodes.teleop_node:SCHEMA'
_BRIDGE = 'bc_robot.core.bridge_settings:BRIDGE_SCHEMA'

GRAPHS: dict[str, list[NodeDecl]] = {
    'deploy': [
        NodeDecl('sim_arm', 'sim_arm', only_if='sim', schema=_SIM_ARM),
        NodeDecl('sim_expert', 'sim_expert', only_if='sim', params={'mode': 'correction'},
                 schema=_SIM_EXPERT),
        NodeDecl('observation_node', 'observation_node', params={'model': '$model'},
                 schema=_OBSERVATION),
        NodeDecl('policy_node', 'policy_node', params={'model': '$model'}, schema=_POLICY),
        NodeDecl('teleop_node', 'teleop_node',
                 params={'mode': 'dagger', 'output_dir': '$output_dir', 'model': '$model'},
                 schema=_TELEOP),
        NodeDecl('controller_bridge', 'controller_bridge', schema=_BRIDGE),
    ],
    'record': [
        NodeDecl('sim_arm', 'sim_arm', only_if='sim', schema=_SIM_ARM),
        NodeDecl('sim_expert', 'sim_expert', only_if='sim', params={'mode': 'teleop'},
                 schema=_SIM_EXPERT),
        NodeDecl('teleop_node', 'teleop_node', params={'mode': 'demo', 'output_dir': '$output_dir'},
                 schema=_TELEOP),
        NodeDecl('controller_bridge', 'controller_bridge', schema=_BRIDGE),
    ],
}
# Parameters rclpy declares on every node itself.
ROS_PARAMETERS = ('use_sim_time', 'start_type_description_service')


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


def check_plans(plans: list[ProcessPlan]) -> list[str]:
    """Problems that would make a node die at start-up, found before anything starts: a
    parameter file or model folder that is not there. Empty when the plan can start."""
    problems = []
    for plan in plans:
        for path in plan.params_files:
            if not Path(path).is_file():
                problems.append(f'{plan.name}: parameter file {path} does not exist')
        model = plan.params.get('model')
        if isinstance(model, str) and model:
            missing = [f for f in ('policy.json', 'policy.onnx') if not Path(model, f).is_file()]
            if missing:
                problems.append(f'{plan.name}: model folder {model} has no {" or ".join(missing)} '
                                f'(pass model:=<folder with policy.json + policy.onnx>)')
    return list(dict.fromkeys(problems))


def load_schema(decl: NodeDecl):
    """The node's ParamSchema (imports its settings module: mujoco for the sim nodes,
    rclpy for teleop; call only where that is acceptable, e.g. before launching)."""
    module, _, attr = decl.schema.partition(':')
    return getattr(importlib.import_module(module), attr)


def yaml_sections(path: str | Path) -> dict[str, dict[str, object]]:
    """A parameter file as {node name ('/' stripped; '**' = every node): flattened
    ros__parameters}, nested dicts joined with '.' as rcl reads them. ValueError names a
    file that is not YAML or not of that shape."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f'{path}: not valid YAML: {exc}') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: a parameter file must map node names to ros__parameters')
    sections: dict[str, dict[str, object]] = {}
    for key, section in data.items():
        params = (section or {}).get('ros__parameters', {}) if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ValueError(f'{path}: section {key!r} has no ros__parameters mapping')
        sections.setdefault(str(key).lstrip('/'), {}).update(_flatten(params))
    return sections


def yaml_parameters(path: str | Path, node: str) -> dict[str, object]:
    """Flattened parameters a parameter file gives `node` (its own and the '/**' section)."""
    sections = yaml_sections(path)
    return {**sections.get('**', {}), **sections.get(node, {})}


def _flatten(params: dict, prefix: str = '') -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def check_parameters(decl: NodeDecl, values: Mapping[str, object], origin: str,
                     schema=None) -> list[str]:
    """Problems with parameters given to a node: a name the node does not declare (rclpy
    would silently ignore it, e.g. a misspelt safety limit) or a value its schema refuses."""
    schema = schema if schema is not None else load_schema(decl)
    problems = []
    for name, value in values.items():
        if name in ROS_PARAMETERS or name.startswith('qos_overrides.'):
            continue
        if name not in schema.names():
            close = difflib.get_close_matches(name, schema.names(), n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            problems.append(f'{origin}: {decl.name} has no parameter {name!r}{hint}')
            continue
        spec = schema[name]
        if value == []:  # rcl reads `[]` as "not set", which the node then refuses
            problems.append(f'{origin}: {decl.name}.{name}: an empty list cannot be written '
                            f'in a ROS parameter file; leave the line out for the default')
            continue
        problem = spec.check(spec.coerce(value))
        if problem:
            problems.append(f'{origin}: {decl.name}: {problem}')
    return problems


def check_params_file(graph: str, path: str | Path, values: dict[str, str]) -> list[str]:
    """Problems of a user's params_file for the nodes `graph` starts with `values`; a
    section naming no node of any graph is reported too (a misspelt node name)."""
    origin = f'params_file {path}'
    try:
        sections = yaml_sections(path)
    except (OSError, ValueError) as exc:
        return [f'params_file: {exc}']
    known = {d.name for decls in GRAPHS.values() for d in decls} | {'**'}
    problems = [f'{origin}: section {key!r} names no node (known: {", ".join(sorted(known))})'
                for key in sections if key not in known]
    started = {p.name for p in plan_graph(graph, values)}
    wildcard = sections.get('**', {})
    declared_somewhere: set[str] = set()
    for decl in GRAPHS[graph]:
        if decl.name in started and decl.schema:
            schema = load_schema(decl)
            declared_somewhere |= set(schema.names())
            # '/**' parameters go to every node; each node takes the ones it declares
            shared = {k: v for k, v in wildcard.items() if k in schema.names()}
            problems += check_parameters(decl, {**shared, **sections.get(decl.name, {})},
                                         origin, schema)
    problems += [f"{origin}: '/**' parameter {name!r} is declared by no node of the graph"
                 for name in wildcard if name not in declared_somewhere
                 and name not in ROS_PARAMETERS and not name.startswith('qos_overrides.')]
    return problems


# --- readiness on /diagnostics ------------------------------------------------------------
# Convention (docs/launch.md): every node publishes on /diagnostics at least one
# DiagnosticStatus whose name starts with '<node name>:' and whose values carry the key
# 'ready' = 'true' | 'false'. A node is ready when its latest statuses that carry the key
# all say 'true'. Ready means started and doing its job with live inputs (what each node
# requires is in docs/launch.md); the level still reports health (OK/WARN/ERROR) apart.
READY_KEY = 'ready'


def ready_value(ready: bool) -> str:
    """The value of the 'ready' key (lower-case, as YAML/ROS booleans are written)."""
    return 'true' if ready else 'false'


def status_node(status_name: str) -> str:
    """'teleop_node: recorder' → 'teleop_node' (the part before the first colon)."""
    return status_name.split(':', 1)[0].strip()


class ReadinessTracker:
    """Which of `nodes` report ready, from the DiagnosticStatus (name, values) pairs seen.
    Pure (no rclpy), so the launcher, tests and tools share one reading of the convention."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = list(nodes)
        self._latest: dict[str, dict[str, bool]] = {n: {} for n in self.nodes}

    def update(self, status_name: str, values: Mapping[str, str]) -> None:
        node = status_node(status_name)
        if node in self._latest and READY_KEY in values:
            self._latest[node][status_name] = str(values[READY_KEY]).strip().lower() == 'true'

    def is_ready(self, node: str) -> bool:
        reports = self._latest.get(node, {})
        return bool(reports) and all(reports.values())

    def ready(self) -> list[str]:
        return [n for n in self.nodes if self.is_ready(n)]

    def missing(self) -> list[str]:
        return [n for n in self.nodes if not self.is_ready(n)]

    def all_ready(self) -> bool:
        return not self.missing()
