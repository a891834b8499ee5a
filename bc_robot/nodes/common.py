"""Wiring every node shares: parameters from a schema, QoS profiles, message conversion,
diagnostics, and a `run()` that spins the executor a node asks for and shuts down cleanly.

Only ROS glue lives here; rules and math are in `bc_robot.core`.
"""
from __future__ import annotations

import logging
import signal
import sys
from typing import Any, Callable, Mapping

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from bc_robot.core.pacing import PacedLoop
from bc_robot.core.params import ParamSchema
from bc_robot.core.pose import Pose
from bc_robot.core.stamps import split_seconds
from bc_robot.nodes.executor import GroupAwareExecutor

SENSOR_QOS = qos_profile_sensor_data
COMMAND_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

SIGNAL_POLL_S = 0.2  # longest a stop signal waits for the main thread

# Diagnostic levels as plain ints (DiagnosticStatus uses bytes).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


def _descriptor(spec, read_only: bool) -> ParameterDescriptor:
    constraints = spec.range_text()
    descriptor = ParameterDescriptor(description=spec.description,
                                     additional_constraints=constraints,
                                     read_only=read_only)
    # rclpy types an empty list as a byte array, so `[]` could never be set on a string or
    # float list; lists are dynamically typed for rclpy and type-checked by the schema.
    if spec.value_type is list:
        descriptor.dynamic_typing = True
    # rclpy checks ranges itself only for scalars; we check everything in the schema.
    if spec.value_type is float and spec.min_value is not None and spec.max_value is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
    if spec.value_type is int and spec.min_value is not None and spec.max_value is not None:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.min_value), to_value=int(spec.max_value), step=0)]
    return descriptor


def declare_parameters(node: Node, schema: ParamSchema,
                       on_change: Callable[[Mapping[str, Any]], None] | None = None
                       ) -> dict[str, Any]:
    """Declare every parameter of `schema` on `node` and return the validated values.

    Raises ValueError naming the parameter and value when a start-up value is invalid.
    Parameters not marked `dynamic` are read-only; a runtime set of a dynamic one is
    checked against the schema and, when accepted, passed to `on_change`.
    """
    values = {}
    overrides = getattr(node, '_parameter_overrides', {})
    for spec in schema:
        override = overrides.get(spec.name)
        if override is not None:
            given = _parameter_value(override)
            if given is None and spec.value_type is list:
                given = []  # rcl reads `[]` in a YAML file as "not set"
            problem = spec.check(given)
            if problem:
                raise ValueError(f'{node.get_name()}: {problem}')
            # YAML and `-p rate:=50` give ints for float parameters; accept them as floats.
            overrides[spec.name] = Parameter(spec.name, value=spec.coerce(given))
        declared = node.declare_parameter(
            spec.name, spec.default,
            _descriptor(spec, read_only=not spec.dynamic),
            ignore_override=False)
        values[spec.name] = _parameter_value(declared)
    try:
        validated = schema.validate(values)
    except ValueError as exc:
        raise ValueError(f'{node.get_name()}: {exc}') from None

    def _on_set(parameters) -> SetParametersResult:
        updates = [(p.name, _parameter_value(p)) for p in parameters]
        reason = schema.check_update(updates)
        if reason:
            node.get_logger().warning(f'refused parameter change: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        owned = {name: schema[name].coerce(value) for name, value in updates
                 if name in schema.names()}
        if owned and on_change is not None:
            on_change(owned)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_on_set)
    # `ros2 param set /node rate 30` sends an int; make it the float the schema declares
    # before rclpy's type check refuses it (pre-set callbacks exist from Iron on; on Humble
    # a runtime float must be written 30.0).
    if hasattr(node, 'add_pre_set_parameters_callback'):
        node.add_pre_set_parameters_callback(
            lambda parameters: [_coerce_parameter(schema, p) for p in parameters])
    return validated


def _coerce_parameter(schema: ParamSchema, parameter: Parameter) -> Parameter:
    """An int (or int list) given for a float (or float list) parameter, as a float one."""
    if parameter.name not in schema.names():
        return parameter
    spec = schema[parameter.name]
    if spec.value_type is float and parameter.type_ == Parameter.Type.INTEGER:
        return Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
    if spec.value_type is list and spec.item_type is float \
            and parameter.type_ == Parameter.Type.INTEGER_ARRAY:
        return Parameter(parameter.name, Parameter.Type.DOUBLE_ARRAY,
                         [float(v) for v in parameter.value])
    return parameter


def _parameter_value(parameter) -> Any:
    value = parameter.value
    if isinstance(value, (tuple, np.ndarray)) or type(value).__name__ == 'array':
        return list(value)
    return value


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    sec, nanosec = split_seconds(seconds)
    return Time(sec=sec, nanosec=nanosec)


def pose_from_msg(msg: PoseStamped) -> Pose:
    """Unvalidated: NaNs pass through so the gate can count and reject them."""
    p, q = msg.pose.position, msg.pose.orientation
    return Pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))


def pose_to_msg(pose: Pose, frame_id: str, stamp: Time) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pose.position)
    (msg.pose.orientation.x, msg.pose.orientation.y,
     msg.pose.orientation.z, msg.pose.orientation.w) = (float(v) for v in pose.orientation)
    return msg


def diagnostic_status(name: str, hardware_id: str, level: int, message: str,
                      values: Mapping[str, Any]) -> DiagnosticStatus:
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, message=message,
                              level=bytes([level]))
    status.values = [KeyValue(key=str(k), value=_format_value(v)) for k, v in values.items()]
    return status


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


class DiagnosticsPublisher:
    """Publishes this node's statuses on /diagnostics (one array per call)."""

    def __init__(self, node: Node, topic: str = '/diagnostics') -> None:
        self._node = node
        self._publisher = node.create_publisher(DiagnosticArray, topic, 10)

    def publish(self, statuses: list[DiagnosticStatus]) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = statuses
        self._publisher.publish(msg)


class _StopSignal:
    """SIGINT/SIGTERM handler: once the node spins, a flag the spin loop checks between
    steps (each returns within SIGNAL_POLL_S). Raising from the handler there could land
    inside rclpy's C++ message conversion, which turns the exception into a RuntimeError
    ('Unable to convert call argument') and the node died with a traceback and no exit
    dump. While the node is still being built it raises, so a slow start can be stopped."""

    def __init__(self) -> None:
        self.requested = False
        self.spinning = False

    def __call__(self, signum, _frame) -> None:
        self.requested = True
        if not self.spinning:
            raise KeyboardInterrupt(f'signal {signum}')


def lean_executor() -> Executor:
    """A single-threaded executor for a node whose callbacks are all short (no inference,
    no blocking I/O): rclpy's C++ EventsExecutor where this rclpy has it (Kilted on), else
    SingleThreadedExecutor. A node woken hundreds of times a second by proprioception spends
    most of its CPU in the executor, not in its callbacks: with two 200 Hz topics, measured
    here on a loaded machine, GroupAwareExecutor 12 % of a core (and a third of the messages
    lost), the single-threaded Python executor 11 %, the EventsExecutor 5 %."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor()
    return EventsExecutor()


class LeanSpinning:
    """Mixin for a Node whose callbacks are all short, no inference or blocking I/O
    (observation_node, sim_arm and sim_expert; their physics and rendering keep their own
    threads): `run` spins it on `lean_executor()`, single-threaded."""

    def make_executor(self) -> Executor:
        executor = lean_executor()
        logger = self.get_logger()  # type: ignore[attr-defined]
        logger.info(f'spinning on {type(executor).__name__}')
        return executor


def make_executor(node: Node, num_threads: int | None = None) -> Executor:
    """The executor `node` asks for (`node.make_executor()`: a node that paces its own
    output loop, see `spin_step`), else a GroupAwareExecutor."""
    factory = getattr(node, 'make_executor', None)
    return factory() if callable(factory) else GroupAwareExecutor(num_threads=num_threads)


def spin_step(node: Node, executor: Executor, timeout_sec: float) -> None:
    """One step of spinning `node`, returning within about `timeout_sec`. A node with
    `spin_once(executor, timeout_sec)` runs its callbacks and its deadline-paced output in
    that one thread (controller_bridge: no GIL handoff between an input callback and an
    output tick, which is what let a subscriber see millisecond output jitter)."""
    own = getattr(node, 'spin_once', None)
    if callable(own):
        own(executor, timeout_sec)
    else:
        executor.spin_once(timeout_sec=timeout_sec)


class PacedSpinning:
    """Mixin for a Node with a deadline-paced tick (`self.loop`, a core.pacing.PacedLoop; None
    when an rclpy timer paces it instead): the thread that spins the node also ticks it, with
    the callbacks run in between (`run` and the tests' NodeSpinner use these two methods)."""

    loop: PacedLoop | None = None
    timer_executor_threads: int | None = None  # executor threads when a timer paces it

    def make_executor(self) -> Executor:
        if self.loop is not None:
            return lean_executor()
        return GroupAwareExecutor(num_threads=self.timer_executor_threads)

    def spin_once(self, executor: Executor, timeout_sec: float) -> None:
        """Run ready callbacks until the next deadline (at most `timeout_sec`), or tick when
        it has come. The first call gives the calling thread the loop's priority."""
        loop = self.loop
        if loop is None:
            executor.spin_once(timeout_sec=timeout_sec)
            return
        first = loop.priority_status is None
        loop.step(executor.spin_once, timeout_sec)
        if first:
            refused = 'refused' in loop.priority_status
            logger = self.get_logger()  # type: ignore[attr-defined]
            (logger.warning if refused else logger.info)(f'{loop.name}: {loop.priority_status}')


def run(node_factory: Callable[[], Node], args: list[str] | None = None,
        num_threads: int | None = None) -> int:
    """Init rclpy, build the node, spin it until SIGINT/SIGTERM, then shut down in the order
    rclpy needs (executor stopped before rclpy.shutdown). Returns the process exit code:
    0 on a requested stop, 2 when the node refused to start (bad parameter or input)."""
    # Our own SIGINT/SIGTERM handling: rclpy's handler invalidates the context first, so
    # timers still firing during shutdown would publish on a dead context. Ending the spin
    # loop instead (_StopSignal) lets close() run while the context is still valid.
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    stop = _StopSignal()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    logger = logging.getLogger('bc_robot')
    node = None
    executor = None
    code = 0
    try:
        node = node_factory()
        executor = make_executor(node, num_threads)
        executor.add_node(node)
        # Steps with a timeout, not spin(): the main thread must come back to Python
        # regularly, or a SIGINT/SIGTERM waits until some callback happens to fire.
        stop.spinning = True
        while rclpy.ok() and not stop.requested:
            spin_step(node, executor, SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        # Startup refusals name the parameter/model problem; show them, not a traceback.
        rclpy.logging.get_logger('bc_robot').fatal(str(exc))
        logger.debug('startup failed', exc_info=True)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, 'close', None)
            if callable(close):
                close()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
