"""`bc-robot launch deploy|record [arg:=value ...]`: start a graph of bc_robot.graph without
launch_ros. Same processes and parameters as the launch files; logs streamed with node-name
prefixes; SIGINT/SIGTERM stop everything (exit 0); a node that dies stops everything (exit 1);
a launch argument, parameter file or model folder that is wrong refuses before anything
starts (exit 2). The launcher also watches /diagnostics and says when every node reports
ready (the convention in bc_robot.graph and docs/launch.md).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from bc_robot.graph import (GRAPHS, LAUNCH_ARGS, ProcessPlan, ReadinessTracker,
                            check_params_file, check_plans, parse_launch_args, plan_graph)

ACCEPTS_EXTRA_ARGS = True
STOP_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 30.0
log = logging.getLogger('bc_robot.launch')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', choices=sorted(GRAPHS), help='which node graph to start')
    parser.add_argument('--ready-timeout', type=float, default=READY_TIMEOUT_S, metavar='S',
                        help='warn which nodes are not ready after S seconds (0: do not '
                             'watch /diagnostics); default %(default)s')
    parser.epilog = 'launch arguments (name:=value):\n' + '\n'.join(
        f'  {a.name} (default {a.default!r}): {a.description}' for a in LAUNCH_ARGS)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _die_with_parent():
    """preexec_fn: the node gets SIGTERM if the launcher dies without stopping it (SIGKILL,
    OOM), so no orphan keeps commanding the arm. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def _set() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return _set


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f'was killed by {signal.Signals(-code).name}'
        except ValueError:
            return f'was killed by signal {-code}'
    return f'exited with code {code}'


class ReadinessMonitor:
    """A small rclpy node inside the launcher: reads /diagnostics, says when each node and
    then the whole graph is ready, and names the laggards after `timeout` seconds."""

    def __init__(self, nodes: list[str], emit, timeout: float, started: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions  # Humble and later
        self._rclpy = rclpy
        self._emit = emit
        self._timeout = timeout
        self._started = started
        self._stop = threading.Event()
        self._tracker = ReadinessTracker(nodes)
        self._announced: set[str] = set()
        self._messages: dict[str, str] = {}
        self._warned = False
        self._lock = threading.Lock()
        self.all_ready_after: float | None = None
        self.context = rclpy.Context()
        # SIGINT/SIGTERM stay the launcher's: it stops the nodes in order, then this node
        rclpy.init(args=[], context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('bc_robot_launch', context=self.context,
                                      start_parameter_services=False)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name='launch-readiness')
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.2)
            self._check()

    def _on_diagnostics(self, msg) -> None:
        with self._lock:
            for status in msg.status:
                self._tracker.update(status.name, {kv.key: kv.value for kv in status.values})
                self._messages[status.name] = status.message

    def _check(self) -> None:
        elapsed = time.monotonic() - self._started
        with self._lock:
            newly = [n for n in self._tracker.ready() if n not in self._announced]
            missing = self._tracker.missing()
            messages = dict(self._messages)
        for name in newly:
            self._announced.add(name)
            self._emit('launch', f'{name} ready ({elapsed:.1f} s)')
        if not missing and self.all_ready_after is None:
            self.all_ready_after = elapsed
            self._emit('launch', f'all {len(self._tracker.nodes)} nodes ready ({elapsed:.1f} s)')
        if missing and self._timeout > 0 and elapsed > self._timeout and not self._warned:
            self._warned = True
            detail = '; '.join(
                f'{n}: ' + (' | '.join(m for s, m in messages.items() if s.startswith(n + ':'))
                            or 'no /diagnostics seen') for n in missing)
            self._emit('launch', f'not ready after {self._timeout:g} s: {detail}')

    def close(self) -> None:
        """Thread joined and executor stopped before the context is shut down."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


class Supervisor:
    """Runs node processes, prefixes their output, and stops them all together."""

    def __init__(self, plans: list[ProcessPlan], out=sys.stdout,
                 ready_timeout: float = READY_TIMEOUT_S) -> None:
        self._plans = plans
        self._out = out
        self._ready_timeout = ready_timeout
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        self._kill_now = threading.Event()
        self._started = time.monotonic()
        self.monitor: ReadinessMonitor | None = None
        width = max((len(p.name) for p in plans), default=0)
        self._prefix = {p.name: f'[{p.name.ljust(width)}] ' for p in plans}

    def start(self) -> None:
        self._started = time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        preexec = _die_with_parent()
        # Every fork happens before any thread of ours exists (preexec_fn is only safe then).
        for plan in self._plans:
            command = [sys.executable, '-m', f'bc_robot.nodes.{plan.executable}', *plan.ros_args()]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True, preexec_fn=preexec)
            self._processes[plan.name] = process
            self._emit('launch', f'started {plan.name} (pid {process.pid})')
        for name, process in self._processes.items():
            thread = threading.Thread(target=self._pump, args=(name, process), name=f'log-{name}')
            thread.start()
            self._threads.append(thread)
        if self._ready_timeout > 0:
            try:
                self.monitor = ReadinessMonitor([p.name for p in self._plans], self._emit,
                                                self._ready_timeout, self._started)
            except Exception as exc:  # noqa: BLE001 - watching is a convenience, never fatal
                self._emit('launch', f'not watching /diagnostics for readiness: {exc!r}')

    def _emit(self, name: str, line: str) -> None:
        with self._lock:
            self._out.write(self._prefix.get(name, f'[{name}] ') + line.rstrip('\n') + '\n')
            self._out.flush()

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        for raw in iter(process.stdout.readline, b''):
            self._emit(name, raw.decode(errors='replace'))
        process.stdout.close()

    def exited(self) -> dict[str, int]:
        """Nodes that have exited so far → their return codes (for callers that drive a
        graph themselves instead of `wait()`, e.g. `bc_robot.orchestrate`)."""
        return {n: p.returncode for n, p in self._processes.items() if p.poll() is not None}

    def request_stop(self, *_args) -> None:
        """First SIGINT/SIGTERM: stop cleanly. A second one: kill what is left now."""
        if self._stop_requested.is_set():
            self._kill_now.set()
        self._stop_requested.set()

    def wait(self) -> int:
        """Block until a stop is requested (→ 0) or a node exits by itself (→ 1)."""
        failed = None
        while failed is None and not self._stop_requested.is_set():
            for name, process in self._processes.items():
                if process.poll() is not None:
                    failed = name
                    break
            self._stop_requested.wait(0.1)
        if failed is not None:
            code = self._processes[failed].returncode
            self._emit('launch', f'{failed} {_exit_text(code)}; stopping the graph')
        else:
            self._emit('launch', 'stop requested; stopping the graph')
        self.stop()
        return 0 if failed is None else 1

    def stop(self) -> None:
        """SIGINT every node (as Ctrl-C would), then SIGKILL what is left after the timeout
        (or at once on a second Ctrl-C)."""
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, process in self._processes.items():
            while process.poll() is None and time.monotonic() < deadline \
                    and not self._kill_now.is_set():
                time.sleep(0.05)
            if process.poll() is None:
                self._emit('launch', f'{name} did not stop; killing it')
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        codes = {n: p.returncode for n, p in self._processes.items()}
        unclean = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT)}
        self._emit('launch', 'all nodes stopped' + (
            '' if not unclean else ' (' + ', '.join(f'{n} {_exit_text(c)}'
                                                    for n, c in unclean.items()) + ')'))


def run(args: argparse.Namespace) -> int:
    try:
        values = parse_launch_args(args.extra)
        plans = plan_graph(args.graph, values)
    except ValueError as exc:
        print(f'bc-robot launch: {exc}', file=sys.stderr)
        return 2
    problems = check_plans(plans)
    if values['params_file'] and not problems:
        logging.getLogger('OpenGL').setLevel(logging.WARNING)  # imported with the sim schema
        problems = check_params_file(args.graph, plans[0].params_files[-1], values)
    if problems:
        print('bc-robot launch: not starting:\n  ' + '\n  '.join(problems), file=sys.stderr)
        return 2
    supervisor = Supervisor(plans, ready_timeout=getattr(args, 'ready_timeout', READY_TIMEOUT_S))
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    supervisor.start()
    return supervisor.wait()
