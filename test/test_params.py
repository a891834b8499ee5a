"""core/params.py (pure) and nodes/common.declare_parameters on a real rclpy node."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from bc_robot.core.params import ParamSchema, ParamSpec

from conftest import REPO, wait_for


def make_schema() -> ParamSchema:
    return ParamSchema([
        ParamSpec('rate', 20.0, 'control rate in Hz', min_value=1.0, max_value=100.0,
                  dynamic=True),
        ParamSpec('history', 2, 'observation frames', min_value=1, max_value=8),
        ParamSpec('mode', 'sync', 'chunk executor', choices=('sync', 'rtc'), dynamic=True),
        ParamSpec('gains', [1.0, 2.0], 'per-axis gains', min_value=0.0, max_value=10.0,
                  dynamic=True),
        ParamSpec('cameras', [], 'camera names', item_type=str, dynamic=True),
        ParamSpec('frame', 'base', 'base frame id', allow_empty=False),
        ParamSpec('enabled', True, 'start enabled'),
    ])


# --- pure schema --------------------------------------------------------------------------

def test_spec_definition_errors():
    with pytest.raises(ValueError, match=r"parameter 'x' needs a description"):
        ParamSpec('x', 1.0, '')
    with pytest.raises(ValueError, match=r"'x' default None has unsupported type NoneType"):
        ParamSpec('x', None, 'd')
    with pytest.raises(ValueError,
                       match=r"list parameter 'x' with an empty default needs item_type"):
        ParamSpec('x', [], 'd')
    with pytest.raises(ValueError, match=r"'x' range \[5, 1\] is empty"):
        ParamSpec('x', 3, 'd', min_value=5, max_value=1)
    with pytest.raises(ValueError, match=r"default of parameter 'x' = 0.5 is below the minimum 1"):
        ParamSpec('x', 0.5, 'd', min_value=1.0)
    with pytest.raises(ValueError, match=r"name must be a non-empty string, got ''"):
        ParamSpec('', 1, 'd')
    with pytest.raises(ValueError, match=r"parameter 'rate' is declared twice"):
        ParamSchema([ParamSpec('rate', 1.0, 'a'), ParamSpec('rate', 2.0, 'b')])


def test_check_names_parameter_and_value():
    schema = make_schema()
    cases = [
        ('rate', 500.0, "parameter 'rate' = 500.0 is above the maximum 100"),
        ('rate', 0.5, "parameter 'rate' = 0.5 is below the minimum 1"),
        ('rate', float('nan'), "parameter 'rate' = nan is not finite"),
        ('rate', 'fast', "parameter 'rate' = 'fast' has type str, expected float"),
        ('rate', True, "parameter 'rate' = True has type bool, expected float"),
        ('history', 2.0, "parameter 'history' = 2.0 has type float, expected int"),
        ('mode', 'async', "parameter 'mode' = 'async' is not one of: sync, rtc"),
        ('gains', [1.0, 11.0], "parameter 'gains' = [1.0, 11.0] is above the maximum 10"),
        ('gains', [1.0, 'a'], "parameter 'gains' = [1.0, 'a'] has an element 'a' of type str"),
        ('cameras', ['wrist', 3], "parameter 'cameras' = ['wrist', 3] has an element 3"),
        ('frame', '', "parameter 'frame' = '' must not be empty"),
    ]
    for name, value, text in cases:
        problem = schema[name].check(value)
        assert problem is not None and problem.startswith(text), (name, value, problem)
        with pytest.raises(ValueError) as info:
            schema.validate({name: value})
        assert text in str(info.value)


def test_int_accepted_for_float_but_not_the_reverse():
    schema = make_schema()
    values = schema.validate({'rate': 50, 'gains': [1, 2.5]})
    assert values['rate'] == 50.0 and type(values['rate']) is float
    assert values['gains'] == [1.0, 2.5] and all(type(v) is float for v in values['gains'])
    assert values['history'] == 2 and values['mode'] == 'sync'  # defaults filled in


def test_unknown_parameter_is_refused_with_the_known_list():
    with pytest.raises(ValueError, match=r'unknown parameter\(s\): raet; known: rate, history'):
        make_schema().validate({'raet': 20.0})


def test_runtime_update_rules():
    schema = make_schema()
    assert schema.check_update([('rate', 30.0)]) is None
    assert schema.check_update([('use_sim_time', True)]) is None  # not ours: passes through
    assert schema.check_update([('history', 3)]) == \
        "parameter 'history' cannot be changed while the node runs"
    assert 'above the maximum' in schema.check_update([('rate', 1000.0)])


def test_range_text_for_describe():
    schema = make_schema()
    assert schema['rate'].range_text() == 'range [1, 100]'
    assert schema['mode'].range_text() == 'one of sync, rtc'
    assert schema['frame'].range_text() == 'must not be empty'
    assert ParamSpec('x', 1.0, 'd', min_value=0.0).range_text() == 'range [0, inf]'


# --- real rclpy node ----------------------------------------------------------------------

def _node(overrides: dict | None = None):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    return Node(f'params_test_{uuid.uuid4().hex[:6]}',
                parameter_overrides=[Parameter(k, value=v) for k, v in (overrides or {}).items()])


def _call(probe, srv_type, service: str, request, timeout: float = 10.0):
    """Call a service from the probe node, as `ros2 param` does from its own node."""
    client = probe.node.create_client(srv_type, service)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f'{service} not available'
        future = client.call_async(request)
        assert wait_for(future.done, timeout), f'{service} did not answer'
        return future.result()
    finally:
        probe.node.destroy_client(client)


def test_descriptors_visible_through_describe_parameters_service(probe):
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import DescribeParameters

    from bc_robot.nodes.common import declare_parameters
    node = _node()
    declare_parameters(node, make_schema())
    probe.add_node(node)
    try:
        response = _call(probe, DescribeParameters, f'/{node.get_name()}/describe_parameters',
                         DescribeParameters.Request(names=['rate', 'history', 'mode', 'cameras']))
        rate, history, mode, cameras = response.descriptors
        assert rate.description == 'control rate in Hz'
        assert rate.type == ParameterType.PARAMETER_DOUBLE
        assert rate.additional_constraints == 'range [1, 100]'
        assert (rate.floating_point_range[0].from_value,
                rate.floating_point_range[0].to_value) == (1.0, 100.0)
        assert not rate.read_only
        assert history.type == ParameterType.PARAMETER_INTEGER
        assert (history.integer_range[0].from_value, history.integer_range[0].to_value) == (1, 8)
        assert history.read_only  # not dynamic
        assert mode.additional_constraints == 'one of sync, rtc'
        assert cameras.description == 'camera names'
    finally:
        probe.remove_node(node)
        node.destroy_node()


def test_startup_refusal_names_parameter_and_value(rclpy_context):
    from bc_robot.nodes.common import declare_parameters
    for overrides, text in [
        ({'rate': 500.0}, "parameter 'rate' = 500.0 is above the maximum 100"),
        ({'rate': 'fast'}, "parameter 'rate' = 'fast' has type str, expected float"),
        ({'mode': 'async'}, "parameter 'mode' = 'async' is not one of: sync, rtc"),
        ({'gains': [1.0, -1.0]}, "parameter 'gains' = [1.0, -1.0] is below the minimum 0"),
        ({'frame': ''}, "parameter 'frame' = '' must not be empty"),
    ]:
        node = _node(overrides)
        try:
            with pytest.raises(ValueError) as info:
                declare_parameters(node, make_schema())
            assert text in str(info.value)
            assert node.get_name() in str(info.value)
        finally:
            node.destroy_node()


def test_int_overrides_for_float_parameters_are_accepted(rclpy_context):
    from bc_robot.nodes.common import declare_parameters
    node = _node({'rate': 50, 'gains': [1, 2], 'cameras': ['wrist', 'front']})
    try:
        values = declare_parameters(node, make_schema())
        assert values['rate'] == 50.0 and type(values['rate']) is float
        assert node.get_parameter('rate').value == 50.0
        assert values['gains'] == [1.0, 2.0]
        assert values['cameras'] == ['wrist', 'front']
    finally:
        node.destroy_node()


def test_runtime_sets_over_the_wire(probe):
    """What `ros2 param set` does: the SetParameters service of the node."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from bc_robot.nodes.common import declare_parameters
    changes = []
    node = _node()
    declare_parameters(node, make_schema(), on_change=changes.append)
    probe.add_node(node)
    service = f'/{node.get_name()}/set_parameters'

    def set_remote(name, value):
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg()])
        return _call(probe, SetParameters, service, request).results[0]

    try:
        result = set_remote('mode', 'rtc')
        assert result.successful, result.reason
        assert node.get_parameter('mode').value == 'rtc'

        result = set_remote('mode', 'async')  # schema refusal, with the reason
        assert not result.successful
        assert result.reason == "parameter 'mode' = 'async' is not one of: sync, rtc"
        assert node.get_parameter('mode').value == 'rtc'  # unchanged

        result = set_remote('history', 4)  # read-only (not dynamic)
        assert not result.successful and 'history' in result.reason
        assert node.get_parameter('history').value == 2

        result = set_remote('gains', [1.0, 20.0])
        assert not result.successful
        assert result.reason == "parameter 'gains' = [1.0, 20.0] is above the maximum 10"

        result = set_remote('cameras', ['wrist', 'front'])
        assert result.successful, result.reason
        result = set_remote('cameras', [])
        assert result.successful, result.reason

        if hasattr(node, 'add_pre_set_parameters_callback'):  # Iron and later
            result = set_remote('rate', 30)  # `ros2 param set /node rate 30` sends an int
            assert result.successful, result.reason
            assert node.get_parameter('rate').value == 30.0
            assert node.get_parameter('rate').type_ == Parameter.Type.DOUBLE
        result = set_remote('rate', 500.0)
        assert not result.successful and '500' in result.reason
        assert changes == ([{'mode': 'rtc'}, {'cameras': ['wrist', 'front']}, {'cameras': []}]
                           + ([{'rate': 30.0}]
                              if hasattr(node, 'add_pre_set_parameters_callback') else []))
    finally:
        probe.remove_node(node)
        node.destroy_node()


NODE_SCRIPT = '''
import sys
from rclpy.node import Node
from bc_robot.core.params import ParamSchema, ParamSpec
from bc_robot.nodes.common import declare_parameters, run

class Demo(Node):
    def __init__(self):
        super().__init__('param_demo')
        values = declare_parameters(self, ParamSchema([
            ParamSpec('rate', 20.0, 'control rate in Hz', min_value=1.0, max_value=100.0)]))
        self.get_logger().info(f"started with rate={values['rate']!r}")
        raise KeyboardInterrupt  # started fine: stop like Ctrl-C

sys.exit(run(Demo))
'''


@pytest.mark.parametrize('how', ['cli', 'yaml'])
def test_process_exit_code_and_message_for_bad_startup_value(tmp_path, how):
    """A node started with a bad value exits 2 and says which parameter and value."""
    script = tmp_path / 'demo_node.py'
    script.write_text(textwrap.dedent(NODE_SCRIPT))

    def start(value):
        if how == 'cli':
            args = ['--ros-args', '-p', f'rate:={value}']
        else:
            params = tmp_path / 'params.yaml'
            params.write_text(f'param_demo:\n  ros__parameters:\n    rate: {value}\n')
            args = ['--ros-args', '--params-file', str(params)]
        return subprocess.run([sys.executable, str(script), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    bad = start('500.0')
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "parameter 'rate' = 500.0 is above the maximum 100" in bad.stdout + bad.stderr
    assert 'Traceback' not in bad.stderr
    good = start('50')  # an int in YAML / on the command line for a float parameter
    assert good.returncode == 0, good.stdout + good.stderr
    assert 'started with rate=50.0' in good.stdout + good.stderr
