"""Shared fixtures: an isolated DDS domain per test session, an in-process probe node, and
real node processes started the way `ros2 run` would start them."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

# Every test session gets its own DDS domain on loopback only, so concurrent sessions (and
# anything else on the machine) never see each other's topics.
# Linux-safe domains (0-101 and 215-232 stay clear of the ephemeral port range).
_SAFE_DOMAINS = [*range(1, 102), *range(215, 233)]
os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().choice(_SAFE_DOMAINS)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('PYTHONUNBUFFERED', '1')

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    """Poll until predicate() is true or timeout (s) passes; returns the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


@pytest.fixture
def rclpy_context():
    import rclpy
    rclpy.init()
    yield
    rclpy.try_shutdown()


class Probe:
    """An in-process node spinning on its own (joined, never daemon) thread."""

    def __init__(self) -> None:
        from bc_robot.nodes.executor import GroupAwareExecutor
        from rclpy.node import Node
        self.node = Node(f'test_probe_{uuid.uuid4().hex[:8]}')
        self.executor = GroupAwareExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._spinners: dict = {}
        self._thread = threading.Thread(target=self._spin, name='probe-spin')
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def add_node(self, node) -> None:
        """A node that ticks on the thread spinning it (`spin_once`: controller_bridge,
        policy_node) gets its own thread and executor, as `common.run` gives it."""
        if callable(getattr(node, 'spin_once', None)):
            self._spinners[node] = NodeSpinner(node)
        else:
            self.executor.add_node(node)

    def remove_node(self, node) -> None:
        """Stop spinning `node`, wherever `add_node` put it, before the test destroys it."""
        spinner = self._spinners.pop(node, None)
        if spinner is not None:
            spinner.stop()
        else:
            self.executor.remove_node(node)

    def close(self) -> None:
        for node in list(self._spinners):
            self.remove_node(node)
        self.executor.shutdown()
        self._thread.join(timeout=10)
        self.node.destroy_node()


class NodeSpinner:
    """`common.spin_step` in a loop on a (joined, never daemon) thread, until stopped."""

    def __init__(self, node) -> None:
        from bc_robot.nodes.common import make_executor
        self.node = node
        self.executor = make_executor(node)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f'spin-{node.get_name()}')
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        from bc_robot.nodes.common import spin_step
        try:
            while not self._stop.is_set():
                spin_step(self.node, self.executor, 0.05)
        except ExternalShutdownException:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown()


@pytest.fixture
def probe(rclpy_context):
    probe = Probe()
    yield probe
    probe.close()


class NodeProcess:
    """One bc_robot node as a real OS process (`python -m bc_robot.nodes.<name>`)."""

    def __init__(self, module: str, log_dir: Path, params: dict | None = None,
                 remap: dict | None = None, name: str | None = None,
                 args: list[str] | None = None) -> None:
        self.module = module
        self.log_path = log_dir / f'{(name or module).replace(".", "_")}-{uuid.uuid4().hex[:6]}.log'
        command = [sys.executable, '-m', module, *(args or []), '--ros-args']
        if name:
            command += ['-r', f'__node:={name}']
        for key, value in (params or {}).items():
            command += ['-p', f'{key}:={_param_text(value)}']
        for src, dst in (remap or {}).items():
            command += ['-r', f'{src}:={dst}']
        self.command = command
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=REPO, env=dict(os.environ))

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (what Ctrl-C and launch send), then SIGKILL if it does not exit."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode


def _param_text(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_param_text(v) for v in value) + ']'
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


@pytest.fixture
def launch_node(tmp_path):
    """Factory: launch_node('bc_robot.nodes.sim_arm', params={...}) → NodeProcess, stopped
    (SIGINT, then SIGKILL) at teardown; its log is printed when the test fails."""
    started: list[NodeProcess] = []

    def _start(module: str, **kwargs) -> NodeProcess:
        process = NodeProcess(module, tmp_path, **kwargs)
        started.append(process)
        return process

    yield _start
    for process in reversed(started):
        process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach node process logs to a failing test's report (the first thing one needs)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == 'call' and report.failed:
        tmp = item.funcargs.get('tmp_path')
        if tmp is not None:
            for log in sorted(Path(tmp).glob('*.log')):
                report.sections.append((f'node log {log.name}', log.read_text(errors='replace')[-6000:]))


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a 1 MiB tmpfs under tmp_path with the given mount options (full or read-only
    disk tests); skips, saying why, where this process may not mount (needs root or
    CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(options: str = 'size=1m') -> Path:
        point = tmp_path / f'tiny{len(mounted)}'
        point.mkdir()
        result = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): '
                        f'{result.stderr.strip()}')
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(['umount', '-l', str(point)], check=False)
