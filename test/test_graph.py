"""The node graph declaration, the launch files built on it, and `bc-robot launch` argument
handling — statically, since launch_ros is not installed here (and by loading the launch
files where it is)."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from bc_robot.graph import (GRAPHS, LAUNCH_ARGS, READY_KEY, REPO_ROOT, ReadinessTracker,
                            check_parameters, check_params_file, check_plans, load_schema,
                            parse_launch_args, plan_graph, ready_value, status_node,
                            yaml_parameters)

SETUP_PY = (REPO_ROOT / 'setup.py').read_text()


def _console_scripts() -> set[str]:
    tree = ast.parse(SETUP_PY)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'NODES':
            return set(ast.literal_eval(node.value))
    raise AssertionError('setup.py has no NODES table')


@pytest.mark.parametrize('graph', sorted(GRAPHS))
def test_every_node_of_a_graph_has_an_executable_module_and_params_file(graph):
    scripts = _console_scripts()
    for decl in GRAPHS[graph]:
        assert decl.executable in scripts, f'{decl.executable} is not a console script in setup.py'
        module = f'bc_robot.nodes.{decl.executable}'
        assert importlib.util.find_spec(module) is not None, f'{module} does not exist'
        params_file = REPO_ROOT / 'config' / f'{decl.name}.yaml'
        assert params_file.is_file(), f'{params_file} is missing'
        data = yaml.safe_load(params_file.read_text())
        assert list(data) == [decl.name], f'{params_file} must be keyed by node name {decl.name}'
        assert 'ros__parameters' in data[decl.name], f'{params_file} lacks ros__parameters'


@pytest.mark.parametrize('name', ['deploy.launch.py', 'record.launch.py'])
def test_launch_files_define_generate_launch_description(name):
    source = (REPO_ROOT / 'launch' / name).read_text()
    tree = ast.parse(source)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions


def test_every_launch_argument_has_a_description():
    names = [arg.name for arg in LAUNCH_ARGS]
    assert len(names) == len(set(names))
    for required in ('model', 'params_file', 'sim', 'use_sim_time', 'log_level'):
        assert required in names
    assert all(len(arg.description) > 10 for arg in LAUNCH_ARGS)


def test_sim_adds_the_simulated_arm_and_expert():
    real = {p.name for p in plan_graph('deploy', parse_launch_args([]))}
    sim = {p.name for p in plan_graph('deploy', parse_launch_args(['sim:=true']))}
    assert 'sim_arm' not in real and 'sim_expert' not in real
    assert sim - real == {'sim_arm', 'sim_expert'}
    assert {'observation_node', 'policy_node', 'teleop_node', 'controller_bridge'} <= real


def test_plan_carries_parameters_remappings_and_files(tmp_path):
    extra = tmp_path / 'mine.yaml'
    extra.write_text('{}')
    plans = plan_graph('deploy', parse_launch_args([
        'use_sim_time:=true', 'joint_states_topic:=/franka/joint_states',
        f'params_file:={extra}', f'model:={tmp_path}', 'log_level:=debug']))
    policy = next(p for p in plans if p.name == 'policy_node')
    assert policy.params['use_sim_time'] is True
    assert policy.params['model'] == str(tmp_path)
    assert ('/joint_states', '/franka/joint_states') in policy.remappings
    assert policy.params_files[-1] == str(extra)
    assert policy.params_files[0].endswith('config/policy_node.yaml')
    args = policy.ros_args()
    assert args[:3] == ['--ros-args', '-r', '__node:=policy_node']
    assert '-r' in args and '/joint_states:=/franka/joint_states' in args
    assert 'debug' in args


@pytest.mark.parametrize('bad, message', [
    (['sim=true'], 'must look like name:=value'),
    (['simulate:=true'], "unknown launch argument 'simulate'"),
    (['sim:=maybe'], "sim:='maybe' is not one of"),
    (['log_level:=loud'], "log_level:='loud' is not one of"),
])
def test_bad_launch_arguments_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_launch_args(bad)


def test_launch_files_load_with_launch_ros_where_installed():
    """Where launch_ros exists (a sourced ROS 2), the real launch files must load and build
    their node actions; here (PyPI wheels only) this is the one test that cannot run."""
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (PyPI-only ROS 2); '
                        'the static checks above cover the launch files')
    from launch import LaunchContext
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for name in ('deploy.launch.py', 'record.launch.py'):
        source = PythonLaunchDescriptionSource(str(Path(REPO_ROOT, 'launch', name)))
        description = source.get_launch_description(LaunchContext())
        assert description.entities


# --- parameters: what the graph and its files give each node is what the node declares ---

@pytest.mark.parametrize('key, decl', [pytest.param((g, d.name), d, id=f'{g}-{d.name}')
                                       for g, decls in GRAPHS.items() for d in decls])
def test_graph_parameters_are_declared_by_the_node(key, decl):
    """A parameter the graph passes (`-p`) must be one the node declares: rclpy would
    otherwise ignore it silently (e.g. 'output_dir' vs the recorder's real name)."""
    assert decl.schema, f'{decl.name} has no schema reference'
    schema = load_schema(decl)
    undeclared = [name for name in decl.params if name not in schema.names()]
    assert not undeclared, f'{key}: {decl.name} does not declare {undeclared}'
    fixed = {k: v for k, v in decl.params.items() if not v.startswith('$')}
    assert not check_parameters(decl, fixed, 'graph', schema)


@pytest.mark.parametrize('name', sorted({d.name for decls in GRAPHS.values() for d in decls}))
def test_package_params_files_hold_only_declared_valid_parameters(name):
    decl = next(d for decls in GRAPHS.values() for d in decls if d.name == name)
    given = yaml_parameters(REPO_ROOT / 'config' / f'{name}.yaml', name)
    assert given, f'config/{name}.yaml sets no parameter'
    assert check_parameters(decl, given, f'config/{name}.yaml') == []


def test_params_file_mistakes_are_named(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({
        'policy_node': {'ros__parameters': {'exectuor': 'sync', 'threads': 0, 'cameras': []}},
        'policy_nodes': {'ros__parameters': {}},
        '/**': {'ros__parameters': {'use_sim_time': True, 'frame_id': 'fr3_link0',
                                    'base_frme': 'x'}},
        'controller_bridge': {'ros__parameters': {'workspace_min': [0.2, -0.4, 0.0]}}}))
    problems = check_params_file('deploy', bad, parse_launch_args([]))
    text = '\n'.join(problems)
    assert "section 'policy_nodes' names no node" in text
    assert "policy_node has no parameter 'exectuor' (did you mean 'executor'?)" in text
    assert "parameter 'threads' = 0 is below the minimum 1" in text
    assert 'policy_node.cameras: an empty list cannot be written' in text
    assert "'/**' parameter 'base_frme' is declared by no node of the graph" in text
    # '/**' use_sim_time, frame_id (declared by some nodes only) and a valid list are fine
    assert len(problems) == 5, problems
    good = tmp_path / 'good.yaml'
    good.write_text('sim_arm:\n  ros__parameters:\n    image_width: 64\n')
    assert check_params_file('deploy', good, parse_launch_args(['sim:=true'])) == []


def test_check_plans_names_a_missing_model_and_params_file(tmp_path):
    plans = plan_graph('deploy', parse_launch_args([f'model:={tmp_path / "none"}']))
    problems = check_plans(plans)
    assert any('policy_node: model folder' in p and 'has no policy.json or policy.onnx' in p
               for p in problems), problems
    record = plan_graph('record', parse_launch_args([f'params_file:={tmp_path / "x.yaml"}']))
    assert any('x.yaml does not exist' in p for p in check_plans(record))
    (tmp_path / 'm').mkdir()
    for name in ('policy.json', 'policy.onnx'):
        (tmp_path / 'm' / name).write_text('{}')
    assert check_plans(plan_graph('deploy', parse_launch_args([f'model:={tmp_path / "m"}']))) == []


def test_teleop_is_told_the_deployed_model_and_recording_folder(tmp_path):
    plans = {p.name: p for p in plan_graph('deploy', parse_launch_args(
        [f'model:={tmp_path}', 'output_dir:=/data/eps']))}
    assert plans['teleop_node'].params['model'] == str(tmp_path)
    assert plans['teleop_node'].params['output_dir'] == '/data/eps'
    assert plans['teleop_node'].params['mode'] == 'dagger'
    record = {p.name: p for p in plan_graph('record', parse_launch_args(['sim:=true']))}
    assert record['teleop_node'].params['mode'] == 'demo'
    assert record['sim_expert'].params['mode'] == 'teleop'


# --- the readiness convention -------------------------------------------------------------

def test_readiness_needs_every_reporting_status_of_a_node_to_say_ready():
    tracker = ReadinessTracker(['teleop_node', 'policy_node'])
    assert tracker.missing() == ['teleop_node', 'policy_node']
    tracker.update('teleop_node: teleop', {READY_KEY: ready_value(True)})
    tracker.update('teleop_node: recorder', {READY_KEY: 'false'})
    tracker.update('policy_node: chunking', {'chunks': '3'})  # no key: says nothing
    tracker.update('other_node: x', {READY_KEY: 'true'})      # not in the graph
    assert tracker.ready() == [] and not tracker.all_ready()
    tracker.update('teleop_node: recorder', {READY_KEY: 'True'})
    tracker.update('policy_node: chunking', {READY_KEY: 'true'})
    assert tracker.all_ready()
    tracker.update('policy_node: chunking', {READY_KEY: 'false'})  # latest report counts
    assert tracker.missing() == ['policy_node']
    assert status_node('controller_bridge: bridge') == 'controller_bridge'
    assert ready_value(False) == 'false'


def test_docs_list_every_launch_argument():
    text = (REPO_ROOT / 'docs' / 'launch.md').read_text()
    assert [a.name for a in LAUNCH_ARGS if f'| `{a.name}` |' not in text] == []
