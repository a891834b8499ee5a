"""The orchestrator's own ROS 2 node: it watches the graph (task state, measured pose,
intervention flag, predicted chunks, a camera, /diagnostics readiness) and drives episodes
through the graph's public interfaces (/sim/reset, the bridge's enable service, the teleop
node's episode services and Bool pedal, parameter services). Nothing here moves the arm
directly: every target still goes through the controller bridge.

It runs in its own rclpy Context, spun by one joined (non-daemon) thread, and never installs
signal handlers: Ctrl-C belongs to the command that owns it.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from bc_robot.graph import ReadinessTracker

log = logging.getLogger('bc_robot.orchestrate')

PATH_PERIOD_S = 0.05      # TCP path samples kept per episode: 20 Hz
MAX_CHUNKS = 600          # predicted chunks kept per episode (the policy sends ≤ 10 Hz)


def private_domain(domain_id: int | None = None) -> int:
    """Put this process (and every child it starts) on a DDS domain of its own, restricted
    to localhost unless `domain_id` is given: an orchestrated sim never publishes
    /target_pose onto a network where a real arm listens. Returns the domain id."""
    if domain_id is None:
        domain_id = random.SystemRandom().randint(101, 230)
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        os.environ['ROS_LOCALHOST_ONLY'] = '1'
    if not 0 <= domain_id <= 232:
        raise ValueError(f'ROS domain id must be in [0, 232], got {domain_id}')
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    return domain_id


def stop_on_signals() -> None:
    """SIGINT (Ctrl-C, `kill -INT`) and SIGTERM (a CI timeout, `kill`) stop an orchestrating
    command alike: KeyboardInterrupt in the main thread, so every graph is stopped cleanly
    (bags closed, dumps written) on the way out. Installed explicitly because a command
    started in the background by a script inherits SIGINT *ignored* (POSIX shells do that
    to asynchronous jobs) and would otherwise never hear a `kill -INT`."""
    import signal

    def _raise(signum, _frame):
        raise KeyboardInterrupt(f'signal {signum}')
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


@dataclass
class Capture:
    """What the link collects during one episode (filled by subscription callbacks)."""

    started: float = field(default_factory=time.monotonic)
    path: list[list[float]] = field(default_factory=list)
    chunks: list[list[list[float]]] = field(default_factory=list)
    intervention_starts: list[float] = field(default_factory=list)
    intervention_time: float = 0.0
    _human_since: float | None = None
    _last_path: float = -1.0

    def close(self, now: float) -> None:
        if self._human_since is not None:
            self.intervention_time += now - self._human_since
            self._human_since = None


class RosLink:
    """Subscriptions, service clients and the pedal publisher the orchestrator needs."""

    def __init__(self, name: str = 'bc_robot_orchestrator', camera: str = 'front') -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path as PathMsg
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, String
        from std_srvs.srv import SetBool, Trigger

        from bc_robot.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS

        self._rclpy = rclpy
        self._lock = threading.Lock()
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context, start_parameter_services=False)
        node = self.node
        self.task: dict[str, Any] | None = None
        self.pose: np.ndarray | None = None
        self.pose_received = 0.0
        self.intervention: bool | None = None
        self.episode_state: dict[str, Any] = {}
        self.frame = None          # latest camera Image message
        self.capture: Capture | None = None
        self._tracker: ReadinessTracker | None = None
        self._diag_messages: dict[str, str] = {}
        self._pedal: bool | None = None
        self._SetParameters = SetParameters

        node.create_subscription(String, '/sim/task_state', self._on_task, LATCHED_QOS)
        node.create_subscription(PoseStamped, '/current_pose', self._on_pose, SENSOR_QOS)
        node.create_subscription(Bool, '/bc/intervention', self._on_intervention, LATCHED_QOS)
        node.create_subscription(String, '/bc/episode/state', self._on_episode_state,
                                 LATCHED_QOS)
        node.create_subscription(PathMsg, '/bc/policy/chunk', self._on_chunk, COMMAND_QOS)
        node.create_subscription(Image, f'/camera/{camera}/image_raw', self._on_image,
                                 SENSOR_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self._pedal_pub = node.create_publisher(Bool, '/bc/pedal', COMMAND_QOS)
        self._Bool = Bool
        node.create_timer(0.1, self._republish_pedal)
        self.reset_client = node.create_client(Trigger, '/sim/reset')
        self.enable_client = node.create_client(SetBool, '/bc/bridge/enable')
        self.episode_clients = {a: node.create_client(Trigger, f'/bc/episode/{a}')
                                for a in ('start', 'stop')}
        self._param_clients: dict[str, Any] = {}
        self._Trigger, self._SetBool = Trigger, SetBool

        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='orchestrator-spin')
        self._thread.start()

    # --- spinning / shutdown ---------------------------------------------------------------
    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # noqa: BLE001 - context shut down under us at close()
                if not self._stop.is_set():
                    raise

    def close(self) -> None:
        """Stop the spin thread, then the executor, node and context (in that order)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    # --- callbacks ---------------------------------------------------------------------------
    def _on_task(self, msg) -> None:
        try:
            task = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with self._lock:
            self.task = task

    def _on_pose(self, msg) -> None:
        p = msg.pose.position
        position = np.array([p.x, p.y, p.z])
        now = time.monotonic()
        with self._lock:
            self.pose, self.pose_received = position, now
            capture = self.capture
            if capture is not None and now - capture._last_path >= PATH_PERIOD_S:
                capture._last_path = now
                capture.path.append([now - capture.started, *position.tolist()])

    def _on_intervention(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            human = bool(msg.data)
            capture = self.capture
            if capture is not None and human != bool(self.intervention):
                if human:
                    capture.intervention_starts.append(now - capture.started)
                    capture._human_since = now
                else:
                    capture.close(now)
            self.intervention = human

    def _on_episode_state(self, msg) -> None:
        try:
            state = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with self._lock:
            self.episode_state = state

    def _on_chunk(self, msg) -> None:
        with self._lock:
            capture = self.capture
            if capture is not None and len(capture.chunks) < MAX_CHUNKS and msg.poses:
                capture.chunks.append([[round(p.pose.position.x, 5), round(p.pose.position.y, 5),
                                        round(p.pose.position.z, 5)] for p in msg.poses])

    def _on_image(self, msg) -> None:
        self.frame = msg

    def _on_diagnostics(self, msg) -> None:
        with self._lock:
            tracker = self._tracker
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if tracker is not None:
                    tracker.update(status.name, values)
                self._diag_messages[status.name] = status.message

    # --- queries -------------------------------------------------------------------------------
    def watch_readiness(self, nodes: Iterable[str]) -> None:
        """Start tracking the /diagnostics readiness of `nodes` (a fresh graph)."""
        with self._lock:
            self._tracker = ReadinessTracker(nodes)
            self._diag_messages = {}

    def not_ready(self) -> list[str]:
        with self._lock:
            return [] if self._tracker is None else self._tracker.missing()

    def diagnostic_messages(self, node: str) -> list[str]:
        with self._lock:
            return [f'{name}: {text}' for name, text in self._diag_messages.items()
                    if name.startswith(node + ':')]

    def task_state(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self.task is None else dict(self.task)

    def tcp(self, max_age: float = 0.5) -> np.ndarray | None:
        """The latest measured TCP position, if it is fresh."""
        with self._lock:
            if self.pose is None or time.monotonic() - self.pose_received > max_age:
                return None
            return self.pose.copy()

    def camera_frame(self) -> np.ndarray | None:
        """The latest camera frame as RGB uint8 (None before the first one)."""
        msg = self.frame
        if msg is None:
            return None
        from bc_robot.nodes.image_msgs import image_msg_to_rgb8
        return image_msg_to_rgb8(msg)

    # --- capture -------------------------------------------------------------------------------
    def begin_capture(self) -> Capture:
        with self._lock:
            self.capture = Capture()
            if self.intervention:
                self.capture._human_since = self.capture.started
            return self.capture

    def end_capture(self) -> Capture | None:
        now = time.monotonic()
        with self._lock:
            capture, self.capture = self.capture, None
        if capture is not None:
            capture.close(now)
        return capture

    # --- actions ---------------------------------------------------------------------------------
    def set_pedal(self, down: bool | None) -> None:
        """Hold (True) or release (False) the pedal on /bc/pedal, repeated at 10 Hz; None
        stops publishing."""
        self._pedal = down
        if down is not None:
            self._pedal_pub.publish(self._Bool(data=bool(down)))

    def _republish_pedal(self) -> None:
        if self._pedal is not None:
            self._pedal_pub.publish(self._Bool(data=bool(self._pedal)))

    def call(self, client, request, timeout: float) -> Any:
        """Call a service and wait for the answer (the spin thread delivers it)."""
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f'service {client.srv_name} is not available after '
                                   f'{timeout:g} s')
            time.sleep(0.05)
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(max(0.1, deadline - time.monotonic())):
            client.remove_pending_request(future)
            raise TimeoutError(f'service {client.srv_name} did not answer within {timeout:g} s')
        return future.result()

    def trigger(self, client, timeout: float = 10.0) -> tuple[bool, str]:
        response = self.call(client, self._Trigger.Request(), timeout)
        return bool(response.success), str(response.message)

    def set_bridge_enabled(self, enabled: bool, timeout: float = 5.0) -> tuple[bool, str]:
        response = self.call(self.enable_client, self._SetBool.Request(data=enabled), timeout)
        return bool(response.success), str(response.message)

    def set_parameters(self, node: str, values: dict[str, Any], timeout: float = 10.0) -> None:
        """Set parameters of a running node through its parameter service; ValueError with
        the node's reason when it refuses one."""
        from rclpy.parameter import Parameter
        client = self._param_clients.get(node)
        if client is None:
            client = self._param_clients[node] = self.node.create_client(
                self._SetParameters, f'/{node}/set_parameters')
        request = self._SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        response = self.call(client, request, timeout)
        for (name, value), result in zip(values.items(), response.results):
            if not result.successful:
                raise ValueError(f'{node} refused {name} = {value!r}: {result.reason}')
