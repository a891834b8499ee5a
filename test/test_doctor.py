"""`bc-robot doctor` run as a user runs it: a real process, real checks, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

CHECK_NAMES = ['python', 'rclpy', 'pubsub', 'onnxruntime', 'torch', 'mujoco', 'disk']


def doctor(*args: str, env: dict | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'bc_robot.cli', 'doctor', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope='module')
def full_report(tmp_path_factory):
    """One full run (all checks) shared by the tests that read it: it takes a few seconds."""
    record_dir = tmp_path_factory.mktemp('doctor') / 'episodes'
    proc = doctor('--json', '--record-dir', str(record_dir), '--min-free-gb', '0')
    return proc, record_dir


@pytest.mark.integration
def test_full_run_passes_on_the_project_environment(full_report):
    proc, record_dir = full_report
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)  # --json prints nothing else on stdout
    assert report['ok'] is True and report['failed'] == []
    checks = {c['name']: c for c in report['checks']}
    assert list(checks) == CHECK_NAMES
    for check in checks.values():
        assert check['status'] in ('PASS', 'WARN'), check
        assert check['hint'] and check['summary']
    assert checks['torch']['required'] is False
    assert all(checks[n]['required'] for n in CHECK_NAMES if n != 'torch')
    assert checks['disk']['details']['record_dir'] == str(record_dir)
    assert 'will be created' in checks['disk']['summary']


@pytest.mark.integration
def test_rmw_and_round_trip_between_two_processes(full_report):
    checks = {c['name']: c for c in json.loads(full_report[0].stdout)['checks']}
    rclpy_check = checks['rclpy']
    assert rclpy_check['details']['rmw'].startswith('rmw_')
    assert rclpy_check['details']['rmw'] in rclpy_check['summary']
    pubsub = checks['pubsub']['details']
    assert pubsub['messages'] == 20
    assert pubsub['received'] + pubsub['lost'] == 20 and pubsub['received'] >= 1
    assert 0 < pubsub['median_ms'] <= pubsub['max_ms']
    assert 1 <= pubsub['domain_id'] <= 101
    assert f'median {pubsub["median_ms"]:.2f} ms' in checks['pubsub']['summary']


@pytest.mark.integration
def test_onnxruntime_providers_are_actually_loaded(full_report):
    ort = {c['name']: c for c in json.loads(full_report[0].stdout)['checks']}['onnxruntime']
    details = ort['details']
    assert 'CPUExecutionProvider' in details['loaded']
    assert set(details['loaded']) | set(details['failed']) == set(details['listed'])
    assert 'CPUExecutionProvider' in ort['summary']
    for provider, reason in details['failed'].items():
        assert reason, provider  # every provider that does not load says why


@pytest.mark.integration
def test_mujoco_rendered_the_test_scene(full_report):
    mujoco = {c['name']: c for c in json.loads(full_report[0].stdout)['checks']}['mujoco']
    assert mujoco['status'] == 'PASS', mujoco
    assert mujoco['details']['shape'] == [48, 64, 3]
    red, green, blue = mujoco['details']['centre_rgb']
    assert red > 2 * max(green, blue)


def test_text_output_has_status_and_hint_per_check(tmp_path):
    proc = doctor('--only', 'python', 'disk', '--record-dir', str(tmp_path),
                  '--min-free-gb', '0', '--warn-free-gb', '0')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith('[PASS] python: Python 3.') for line in lines)
    assert any(line.startswith('[PASS] disk: ') and str(tmp_path) in line for line in lines)
    assert sum(line.strip().startswith('hint: ') for line in lines) == 2
    assert lines[-1] == 'doctor: 2 PASS, 0 WARN, 0 FAIL: this machine is ready'


def test_failing_required_check_gives_non_zero_exit(tmp_path):
    proc = doctor('--only', 'disk', '--record-dir', str(tmp_path), '--min-free-gb', '1e9')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '[FAIL] disk: ' in proc.stdout and 'below the 1e+09 GB minimum' in proc.stdout
    assert 'NOT ready (required checks failed: disk)' in proc.stdout

    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    proc = doctor('--json', '--only', 'disk', '--record-dir', str(blocker / 'episodes'))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report['ok'] is False and report['failed'] == ['disk']
    assert report['checks'][0]['summary'] == \
        f'cannot record into {blocker / "episodes"}: {blocker} is not a directory'


def test_warning_does_not_fail(tmp_path):
    proc = doctor('--only', 'disk', '--record-dir', str(tmp_path), '--min-free-gb', '0',
                  '--warn-free-gb', '1e9')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '[WARN] disk: ' in proc.stdout


def test_broken_middleware_is_reported_not_crashed():
    """A wrong RMW_IMPLEMENTATION makes rcl exit() on load: the doctor must say so."""
    proc = doctor('--only', 'rclpy', 'pubsub', env={'RMW_IMPLEMENTATION': 'rmw_does_not_exist'})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '[FAIL] rclpy: rclpy does not load' in proc.stdout
    assert 'rmw_does_not_exist' in proc.stdout
    assert '[FAIL] pubsub: not run' in proc.stdout


def test_missing_torch_is_only_a_warning(tmp_path):
    fake = tmp_path / 'shadow' / 'torch'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('No module named torch (test shadow)')\n")
    proc = doctor('--only', 'torch', env={'PYTHONPATH': str(tmp_path / 'shadow')})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '[WARN] torch (optional): torch unavailable' in proc.stdout
    assert 'test shadow' in proc.stdout


def test_bad_options_are_refused():
    proc = doctor('--only', 'gpu')
    assert proc.returncode == 2 and "invalid choice: 'gpu'" in proc.stderr
    proc = doctor('--min-free-gb', '-1')
    assert proc.returncode == 2 and "'-1' must be a number >= 0" in proc.stderr
