"""`bc-robot loop` end to end with tiny budgets, as a real process: demonstrations recorded
through the record graph (scripted human on the SpaceMouse topics, MCAP bags), a policy
trained and exported, evaluated on the deploy graph, one HG-DAgger round with the expert on
the pedal (corrections recorded), retraining for both aggregation variants, evaluation again,
and the table + plot written. Every node is a real process talking DDS. The `reach` task
keeps the scripted human's demonstrations short and reliable on a loaded CI machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from bc_robot.recording.episode import read_episode_json

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 480  # the run takes ~2.5 min on an idle 2-core machine


def test_tiny_loop_records_trains_corrects_retrains_and_reports(tmp_path):
    out = tmp_path / 'loop'
    log_path = tmp_path / 'loop.log'
    with open(log_path, 'wb') as log:
        process = subprocess.run(
            [sys.executable, '-m', 'bc_robot.cli', 'loop', '--output', str(out),
             '--task', 'reach', '--demos', '2', '--rounds', '1', '--corrections', '1', '--eval-episodes', '1',
             '--label-budget', '10',
             '--steps', '20', '--image-size', '24x32', '--timeout', '5', '--threads', '1',
             '--domain-id', os.environ['ROS_DOMAIN_ID']],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=LIMIT_S)
    text = log_path.read_text(errors='replace')
    assert process.returncode == 0, text[-4000:]

    results = json.loads((out / 'results.json').read_text())
    rows = {(r['variant'], r['round']): r for r in results['rows']}
    assert set(rows) == {('bc', 0), ('plain', 1), ('weighted', 1)}
    for row in rows.values():
        assert row['episodes'] == 1 and row['errors'] == 0
        assert (Path(row['model']) / 'policy.onnx').is_file()
    # demonstrations: real bags, labelled by the task state, human-driven
    record = next(p for p in results['phases'] if p['phase'] == 'record')
    expert = record['expert']
    demos = [Path(p) for p in record['episodes']]
    assert expert['successes'] >= 2 and len(demos) == expert['episodes']
    for folder, result in zip(demos, expert['results']):
        meta = read_episode_json(folder)
        assert meta['status'] == 'saved' and meta['mode'] == 'demo'
        assert meta['success'] == result['success']  # the reset never labels the episode
        assert list(folder.glob('*.mcap'))
    assert rows[('bc', 0)]['samples']['demo'] > 0
    # corrections: a policy episode recorded by the teleop node in dagger mode; the samples
    # the human labelled are counted apart from the policy-driven ones
    corrections = [p for p in (out / 'corrections').rglob('episode.json')]
    assert len(corrections) == 1
    meta = json.loads(corrections[0].read_text())
    assert meta['mode'] == 'dagger' and meta['model']['sha256']
    collected = rows[('plain', 1)]['samples']
    assert collected['demo'] == rows[('bc', 0)]['samples']['demo']
    assert collected['total'] > collected['demo']
    assert collected['correction'] == rows[('weighted', 1)]['samples']['correction']
    if meta['interventions']['count'] > 0:
        assert collected['correction'] > 0
    # the label budget (10 x the demos' samples, round 1 of 1) counted the episode and kept it
    collection = rows[('plain', 1)]['collection']
    assert collection['budget_samples'] == pytest.approx(10 * collected['demo'])
    assert collection['left_out'] == [] and collection['recorded'] == 1
    assert 'corrections within +1000 % labelled samples' in (out / 'loop.md').read_text()
    # plain aggregation (HG-DAgger) weighs what a person labelled 1 and what the policy did 0
    assert collected['weight'] == pytest.approx(collected['labelled'])
    assert collected['total'] > collected['labelled']   # the policy drove part of the episode
    # the table and the plot
    table = (out / 'loop.md').read_text()
    for label in ('| bc | 0 |', '| plain | 1 |', '| weighted | 1 |'):
        assert label in table
    assert cv2.imread(str(out / 'loop.png')).shape == (420, 1040, 3)
    assert '| variant | round | success |' in text  # printed too
