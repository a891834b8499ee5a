"""`bc-robot launch` brings up the real graph: every node a real process (MuJoCo arm, ONNX
Runtime policy, MCAP recorder, bridge) reporting ready on /diagnostics, a clean stop on
SIGINT with no process left behind, and the whole graph stopped when one node dies.

Readiness is the convention of docs/launch.md, read with `bc_robot.graph.ReadinessTracker`
from a probe node that subscribes /diagnostics itself (independent of the launcher's own
watcher, whose "all N nodes ready" line is checked as well).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray

from bc_robot.core.spec import CameraSpec, load_spec
from bc_robot.graph import REPO_ROOT, ReadinessTracker, parse_launch_args, plan_graph
from bc_robot.runtime.testing_models import make_spec, write_model
from conftest import wait_for

READY_WITHIN_S = 20.0  # issue 8: every node reports ready within 20 s
STOP_WITHIN_S = 20.0
STARTED = re.compile(r'^\[launch\s*\] started (\S+) \(pid (\d+)\)$', re.MULTILINE)

# The sim renders small, slower frames here: the graph is the same, the shared CI machine is
# not. A trained default model keeps the sim's image size (its crops are in source pixels).
LIGHT_SIM = """\
sim_arm:
  ros__parameters:
    camera_rate: 10.0
"""
SMALL_FRAMES = """\
    image_width: 64
    image_height: 48
"""


def default_model_loads() -> bool:
    try:
        load_spec(REPO_ROOT / 'models' / 'default')
        return True
    except (OSError, ValueError):
        return False


def tiny_model(folder: Path) -> Path:
    """A code-built policy matching the sim: cameras front + wrist, TCP position + gripper
    state, RTC prefix input; it circles above the table."""
    spec = make_spec(name='launch_test', cameras=[CameraSpec('front', 24, 32),
                                                   CameraSpec('wrist', 24, 32)],
                     state_keys=('ee_position', 'gripper'), accepts_prefix=True)
    return write_model(folder, spec, function='circle', period_s=8.0)


class Launcher:
    """`python -m bc_robot.cli launch ...` as a real process; output in a *.log file of
    tmp_path (attached to a failing test's report by conftest)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / f'launch-{uuid.uuid4().hex[:6]}.log'
        self._log = open(self.log_path, 'wb')
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'bc_robot.cli', 'launch', *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp_path, env=dict(os.environ))

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in STARTED.findall(self.output())}

    def interrupt_and_wait(self, timeout: float) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        """Teardown: never leave a graph running, whatever the test did."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in self.pids().values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.fixture
def launcher(tmp_path):
    started: list[Launcher] = []

    def _start(*args: str) -> Launcher:
        launch = Launcher(tmp_path, *args)
        started.append(launch)
        return launch

    yield _start
    for launch in started:
        launch.close()


@pytest.fixture
def readiness(probe):
    """A tracker fed from /diagnostics by the probe node (nodes added per test)."""
    lock = threading.Lock()
    state = {'tracker': ReadinessTracker([]), 'seen': set()}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        with lock:
            for status in msg.status:
                state['seen'].add(status.name)
                state['tracker'].update(status.name, {kv.key: kv.value for kv in status.values})

    probe.node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 50)

    class Readiness:
        def expect(self, nodes: list[str]) -> None:
            with lock:
                state['tracker'] = ReadinessTracker(nodes)

        def missing(self) -> list[str]:
            with lock:
                return state['tracker'].missing()

        def seen(self) -> set[str]:
            with lock:
                return set(state['seen'])
    return Readiness()


def bring_up(launcher, readiness, tmp_path, graph: str, *args: str,
             small_frames: bool = True) -> Launcher:
    """Start `graph` and assert every node of its plan reports ready within 20 s."""
    light = tmp_path / 'light_sim.yaml'
    light.write_text(LIGHT_SIM + (SMALL_FRAMES if small_frames else ''))
    args = (*args, f'params_file:={light}', f'output_dir:={tmp_path / "episodes"}')
    expected = [p.name for p in plan_graph(graph, parse_launch_args(list(args)))]
    readiness.expect(expected)
    launch = launcher(graph, *args)
    came_up = wait_for(lambda: not readiness.missing() or launch.process.poll() is not None,
                       READY_WITHIN_S + 2.0, period=0.1)
    elapsed = time.monotonic() - launch.started_at
    assert launch.process.poll() is None, f'launcher exited ({launch.process.returncode})'
    assert came_up and elapsed <= READY_WITHIN_S, (
        f'not ready after {elapsed:.1f} s: {readiness.missing()}; statuses seen: '
        f'{sorted(readiness.seen())}')
    assert sorted(launch.pids()) == sorted(expected)
    return launch


def stop_cleanly(launch: Launcher) -> None:
    pids = launch.pids()
    assert all(pid_alive(pid) for pid in pids.values()), 'a node died while the graph ran'
    started = time.monotonic()
    code = launch.interrupt_and_wait(STOP_WITHIN_S)
    out = launch.output()
    assert code == 0, f'launcher exited {code} on SIGINT'
    assert time.monotonic() - started < STOP_WITHIN_S
    assert 'did not stop; killing it' not in out
    assert re.search(r'^\[launch\s*\] all nodes stopped$', out, re.MULTILINE), \
        'a node exited uncleanly on SIGINT'
    assert not [n for n, pid in pids.items() if pid_alive(pid)], 'node processes left behind'


@pytest.mark.integration
def test_deploy_sim_comes_up_ready_and_stops_cleanly(launcher, readiness, tmp_path):
    # The default invocation once a trained default model ships; a code-built one until then.
    default = default_model_loads()
    model = [] if default else [f'model:={tiny_model(tmp_path / "model")}']
    launch = bring_up(launcher, readiness, tmp_path, 'deploy', 'sim:=true', *model,
                      small_frames=not default)
    assert wait_for(lambda: 'nodes ready' in launch.output(), 5.0), \
        "the launcher's own readiness watcher did not report"
    assert re.search(r'all 6 nodes ready \(\d+\.\d s\)', launch.output())
    stop_cleanly(launch)


@pytest.mark.integration
def test_a_node_that_dies_stops_the_graph(launcher, readiness, tmp_path):
    model = tiny_model(tmp_path / 'model')
    readiness.expect(['controller_bridge'])
    launch = launcher('deploy', f'model:={model}', f'output_dir:={tmp_path / "episodes"}')
    # the bridge is up (it reports, though not ready: no robot in this graph)
    assert wait_for(lambda: any(s.startswith('controller_bridge:') for s in readiness.seen()),
                    READY_WITHIN_S, period=0.1), f'no bridge status: {launch.output()[-2000:]}'
    pids = launch.pids()
    assert sorted(pids) == ['controller_bridge', 'observation_node', 'policy_node',
                            'teleop_node']
    os.kill(pids['controller_bridge'], signal.SIGKILL)
    code = launch.process.wait(timeout=STOP_WITHIN_S)
    out = launch.output()
    assert code != 0
    assert 'controller_bridge was killed by SIGKILL; stopping the graph' in out
    assert not [n for n, pid in pids.items() if pid_alive(pid)], 'node processes left behind'


@pytest.mark.integration
def test_record_sim_comes_up_ready(launcher, readiness, tmp_path):
    launch = bring_up(launcher, readiness, tmp_path, 'record', 'sim:=true')
    stop_cleanly(launch)


def test_bad_arguments_refuse_before_anything_starts(tmp_path):
    """A missing model or a misspelt parameter: exit 2 naming it, no process started."""
    bad = tmp_path / 'bad.yaml'
    bad.write_text('controller_bridge:\n  ros__parameters:\n    max_linear_sped: 9.0\n')
    for args, message in (
            ([f'model:={tmp_path / "nowhere"}'], 'has no policy.json'),
            ([f'model:={tiny_model(tmp_path / "m")}', f'params_file:={bad}'],
             "controller_bridge has no parameter 'max_linear_sped' (did you mean "
             "'max_linear_speed'?)")):
        result = subprocess.run([sys.executable, '-m', 'bc_robot.cli', 'launch', 'deploy', *args],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr
        assert 'started' not in result.stdout
