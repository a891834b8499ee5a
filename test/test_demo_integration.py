"""`bc-robot demo` on the full deploy graph as a real process, with a code-built ONNX policy
matching the sim (cameras front + wrist, TCP position + gripper): seeded episodes through the
reset protocol, success / latency / interventions printed, and the report folder written
with its Markdown and PNG figures."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from bc_robot.core.spec import CameraSpec
from bc_robot.runtime.testing_models import make_spec, write_model

REPO = Path(__file__).resolve().parents[1]


def circle_model(folder: Path) -> Path:
    spec = make_spec(name='demo_test', cameras=[CameraSpec('front', 24, 32),
                                                 CameraSpec('wrist', 24, 32)],
                     state_keys=('ee_position', 'gripper'), accepts_prefix=True)
    return write_model(folder, spec, function='circle', period_s=8.0)


def demo(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[int, str]:
    log_path = tmp_path / f'demo-{len(list(tmp_path.glob("demo-*.log")))}.log'
    with open(log_path, 'wb') as log:
        process = subprocess.run(
            [sys.executable, '-m', 'bc_robot.cli', 'demo', *args,
             '--domain-id', os.environ['ROS_DOMAIN_ID']],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=timeout)
    return process.returncode, log_path.read_text(errors='replace')


@pytest.mark.integration
def test_demo_deploys_a_model_runs_seeded_episodes_and_writes_its_report(tmp_path):
    model = circle_model(tmp_path / 'model')
    report = tmp_path / 'report'
    code, text = demo(tmp_path, '--model', str(model), '--episodes', '2', '--seed', '5',
                      '--timeout', '4', '--output', str(report))
    assert code == 0, text[-4000:]
    assert re.search(r'^success rate: 0/2 \(0 %', text, re.MULTILINE)
    latency = re.search(r'^obs->target latency: p50 ([\d.]+) ms, p99 ([\d.]+) ms', text,
                        re.MULTILINE)
    assert latency and 0 < float(latency.group(1)) <= float(latency.group(2))
    assert re.search(r'^interventions: \d+ in \d+ of 2 episodes', text, re.MULTILINE)
    assert f'report: {report / "report.md"}' in text

    summary = json.loads((report / 'summary.json').read_text())
    assert [e['seed'] for e in summary['episodes']] == [5, 6]
    assert all(e['error'] is None for e in summary['episodes'])
    # the scene really was reset to each seed: different cube positions, arm from home
    episodes = json.loads((report / 'episodes.json').read_text())
    cubes = [tuple(e['scene']['cube']) for e in episodes]
    assert cubes[0] != cubes[1]
    for e in episodes:
        home_offset = [a - b for a, b in zip(e['start_tcp'], (0.45, 0.0, 0.30))]
        assert sum(v * v for v in home_offset) ** 0.5 <= 0.02  # reset: the arm is home
        assert len(e['path']) > 20  # 20 Hz samples of the TCP over the episode
    assert any(e['chunks'] for e in episodes)  # the plans from /bc/policy/chunk
    assert summary['latency']['obs_to_target_ms']['n'] > 0
    text_md = (report / 'report.md').read_text()
    for name in ('latency_histogram.png', 'paths.png', 'camera_start.png'):
        assert f']({name})' in text_md
        assert cv2.imread(str(report / name)) is not None


def test_demo_refuses_a_missing_model_before_starting_anything(tmp_path):
    code, text = demo(tmp_path, '--model', str(tmp_path / 'nothing'), timeout=60)
    assert code == 2 and 'has no policy.json + policy.onnx' in text
    code, text = demo(tmp_path, '--episodes', '0', timeout=60)
    assert code == 2 and '--episodes must be in [1, 50]' in text
