"""`bc-robot launch deploy|record [arg:=value ...]`: start a graph of bc_robot.graph without
launch_ros. Same processes and parameters as the launch files; logs streamed with node-name
prefixes; SIGINT/SIGTERM stop everything (exit 0); a node that dies stops everything (exit 1).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from bc_robot.graph import GRAPHS, LAUNCH_ARGS, ProcessPlan, parse_launch_args, plan_graph

ACCEPTS_EXTRA_ARGS = True
STOP_TIMEOUT_S = 15.0
log = logging.getLogger('bc_robot.launch')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', choices=sorted(GRAPHS), help='which node graph to start')
    parser.epilog = 'launch arguments (name:=value):\n' + '\n'.join(
        f'  {a.name} (default {a.default!r}): {a.description}' for a in LAUNCH_ARGS)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


class Supervisor:
    """Runs node processes, prefixes their output, and stops them all together."""

    def __init__(self, plans: list[ProcessPlan], out=sys.stdout) -> None:
        self._plans = plans
        self._out = out
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        width = max((len(p.name) for p in plans), default=0)
        self._prefix = {p.name: f'[{p.name.ljust(width)}] ' for p in plans}

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        for plan in self._plans:
            command = [sys.executable, '-m', f'bc_robot.nodes.{plan.executable}', *plan.ros_args()]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
            self._processes[plan.name] = process
            thread = threading.Thread(target=self._pump, args=(plan.name, process),
                                      name=f'log-{plan.name}')
            thread.start()
            self._threads.append(thread)
            self._emit('launch', f'started {plan.name} (pid {process.pid})')

    def _emit(self, name: str, line: str) -> None:
        with self._lock:
            self._out.write(self._prefix.get(name, f'[{name}] ') + line.rstrip('\n') + '\n')
            self._out.flush()

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        for raw in iter(process.stdout.readline, b''):
            self._emit(name, raw.decode(errors='replace'))
        process.stdout.close()

    def request_stop(self, *_args) -> None:
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
            self._emit('launch', f'{failed} exited with code {code}; stopping the graph')
        self.stop()
        return 0 if failed is None else 1

    def stop(self) -> None:
        """SIGINT every node (as Ctrl-C would), then SIGKILL what is left after the timeout."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, process in self._processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._emit('launch', f'{name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing it')
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=5)


def run(args: argparse.Namespace) -> int:
    try:
        plans = plan_graph(args.graph, parse_launch_args(args.extra))
    except ValueError as exc:
        print(f'bc-robot launch: {exc}', file=sys.stderr)
        return 2
    supervisor = Supervisor(plans)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    supervisor.start()
    return supervisor.wait()
