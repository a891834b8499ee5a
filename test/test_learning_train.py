"""`bc-robot train` / `bc-robot export` end to end on recorded-format episodes: run folder,
weights-only checkpoints, loss-curve PNG, resume, --init, errors, and a two-process DDP run
through torchrun (gloo on CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from bc_robot.cli import main
from bc_robot.core.spec import load_spec
from bc_robot.learning.synthetic import SyntheticEpisode, write_episode
from bc_robot.learning.trainer import AUXILIARY_LEARNED_RATIO, auxiliary_warning

TINY = ['--set', 'data.cameras=[{name: front, height: 16, width: 16}]',
        '--set', 'data.chunk_length=4', '--set', 'model.d_model=32',
        '--set', 'model.channels=[8, 16]', '--set', 'model.keypoints=8',
        '--set', 'train.batch_size=16', '--set', 'train.val_every=6',
        '--set', 'train.warmup_steps=2', '--set', 'train.threads=1', '--no-progress']


@pytest.fixture(scope='module')
def episodes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('episodes')
    for i in range(3):
        write_episode(root / f'ep{i}', SyntheticEpisode(
            goal=(0.5 + 0.05 * i, -0.1 + 0.1 * i), duration_s=1.5, cameras=('front',),
            image_size=(24, 32)))
    return root


def test_train_resume_export_and_init(episodes, tmp_path, capsys):
    run = tmp_path / 'run'
    code = main(['train', str(episodes / 'ep*'), '--head', 'mse', '--out', str(run),
                 '--steps', '12', '--intervention-weight', '2', '--export',
                 str(tmp_path / 'model'), *TINY[:-1]])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert 'ETA' in out.err and 'loss' in out.err          # the progress bar
    assert 'trained mse for 12 steps' in out.out
    # Checkpoints hold only tensors and plain values: weights_only loading works.
    last = torch.load(run / 'checkpoints' / 'last.pt', weights_only=True)
    assert last['step'] == 12 and last['format'] == 'bc_robot.checkpoint/1'
    assert (run / 'checkpoints' / 'best.pt').is_file()
    config = yaml.safe_load((run / 'config.yaml').read_text())
    assert config['dagger']['intervention_weight'] == 2.0 and config['head'] == 'mse'
    metrics = [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]
    assert [m['step'] for m in metrics] == [6, 12]
    assert all(np.isfinite(m['val_loss']) and m['val_position_error_m'] >= 0 for m in metrics)
    assert 0 < metrics[1]['lr'] < metrics[0]['lr'] <= config['train']['lr']  # cosine decay
    png = cv2.imread(str(run / 'loss_curves.png'))
    assert png is not None and png.shape[2] == 3
    blue = (png[:, :, 0] > 150) & (png[:, :, 2] < 100)  # the train curve is drawn
    assert blue.sum() > 50
    spec = load_spec(tmp_path / 'model')
    assert spec.head == 'mse' and spec.provenance['step'] == 12
    assert len(spec.provenance['data']) == 3

    # Resume: continues from step 12 to 18 with the same optimizer state.
    code = main(['train', str(episodes / 'ep*'), '--head', 'mse', '--out', str(run),
                 '--steps', '18', '--resume', *TINY])
    assert code == 0, capsys.readouterr().err
    resumed = torch.load(run / 'checkpoints' / 'last.pt', weights_only=True)
    assert resumed['step'] == 18
    assert len(json.loads(resumed['history'])['train']) == 18
    assert [json.loads(line)['step'] for line in
            (run / 'metrics.jsonl').read_text().splitlines()] == [6, 12, 18]

    # --init: a flow policy starts from the mse run's encoder.
    code = main(['train', str(episodes / 'ep*'), '--head', 'flow', '--out',
                 str(tmp_path / 'fine'), '--steps', '2', '--init', str(run), *TINY])
    assert code == 0, capsys.readouterr().err
    fine = torch.load(tmp_path / 'fine' / 'checkpoints' / 'last.pt', weights_only=True)
    before = last['model']['encoder.cameras.front.stem.0.weight']
    after = fine['model']['encoder.cameras.front.stem.0.weight']
    assert torch.allclose(before, after, atol=0.05) and not torch.equal(before, after)
    assert fine['stats'] == resumed['stats']  # the earlier policy's normalization is kept
    # ... but only in the same units: absolute positions cannot fine-tune into relative ones.
    code = main(['train', str(episodes / 'ep*'), '--head', 'flow', '--out',
                 str(tmp_path / 'mixed'), '--steps', '2', '--init', str(run),
                 '--set', 'model.relative_position=xy', *TINY])
    assert code == 2
    assert 'action_frame are False / world there and xy / world here' in capsys.readouterr().err

    # `bc-robot export` of a run folder, with a sampler setting.
    code = main(['export', str(tmp_path / 'fine'), '--out', str(tmp_path / 'flow_model'),
                 '--sampler', 'steps=4'])
    assert code == 0, capsys.readouterr().err
    assert load_spec(tmp_path / 'flow_model').sampler == {'steps': 4}


@pytest.mark.parametrize('args, message', [
    (['--set', 'train.stepz=3'], "unknown key(s) ['stepz']"),
    (['--set', 'model.head_options={bins: 3}'], "unknown model.head_options ['bins']"),
    (['--steps', '0'], 'train.steps = 0'),
])
def test_bad_settings_exit_2_naming_the_value(episodes, tmp_path, capsys, args, message):
    code = main(['train', str(episodes / 'ep0'), '--head', 'flow', '--out', str(tmp_path / 'r'),
                 *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_data_and_bad_checkpoint_exit_2(tmp_path, capsys):
    assert main(['train', str(tmp_path / 'nothing*'), '--head', 'mse']) == 2
    assert 'matches nothing' in capsys.readouterr().err
    (tmp_path / 'evil.pt').write_bytes(b'\x80\x04not a checkpoint')
    assert main(['export', str(tmp_path / 'evil.pt'), '--out', str(tmp_path / 'm')]) == 2
    assert 'not a bc_robot checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'm').exists()


@pytest.mark.integration
def test_two_process_ddp_smoke_run(episodes, tmp_path):
    """torchrun starts two CPU ranks (gloo); both train on disjoint batches and end with
    identical weights; rank 0 alone writes the run folder."""
    run = tmp_path / 'ddp'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node=2', '-m', 'bc_robot.cli', 'train', str(episodes / 'ep*'),
               '--head', 'mse', '--out', str(run), '--steps', '6', '--device', 'cpu', *TINY]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['world_size'] == 2 and summary['ranks_in_sync'] is True
    assert summary['steps'] == 6
    checkpoint = torch.load(run / 'checkpoints' / 'last.pt', weights_only=True)
    assert checkpoint['world_size'] == 2
    assert result.stdout.count('trained mse for 6 steps') == 1  # rank 0 reports


def test_time_budget_stops_and_checkpoints(episodes, tmp_path, capsys):
    """--max-cpu-minutes: the budget that means the same on a shared machine."""
    run = tmp_path / 'budget'
    code = main(['train', str(episodes / 'ep0'), '--head', 'mse', '--out', str(run),
                 '--steps', '500', '--max-cpu-minutes', '0.001', *TINY])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / 'summary.json').read_text())
    assert 1 <= summary['steps'] < 500 and summary['train_cpu_seconds'] > 0.06
    assert torch.load(run / 'checkpoints' / 'last.pt', weights_only=True)['step'] == \
        summary['steps']


def test_yaw_augmented_training_normalizes_turning_pairs_isotropically(episodes, tmp_path,
                                                                        capsys):
    """train.augment_yaw_deg runs end to end on a camera-less policy, and the artifact's
    statistics are those of turned data: x and y of each pair share mean 0 and one std."""
    code = main(['train', str(episodes / 'ep*'), '--head', 'mse', '--out', str(tmp_path / 'run'),
                 '--steps', '6', '--export', str(tmp_path / 'model'), *TINY,
                 '--set', 'data.cameras=[]', '--set', 'train.augment_yaw_deg=180'])
    out = capsys.readouterr()
    assert code == 0, out.err
    stats = load_spec(tmp_path / 'model').normalization['state']
    for o in (0, 3, 6):  # ee_position, both ee_rot6d columns
        assert stats.mean[o] == stats.mean[o + 1] == 0.0
        assert stats.std[o] == pytest.approx(stats.std[o + 1])
    assert stats.mean[2] > 0.0  # the height does not turn
    code = main(['train', str(episodes / 'ep*'), '--head', 'mse', '--out', str(tmp_path / 'r2'),
                 '--steps', '2', *TINY, '--set', 'train.augment_yaw_deg=90'])
    assert code == 2 and "cameras ['front'] would not see turn" in capsys.readouterr().err


def test_an_auxiliary_target_that_did_not_learn_is_warned_about(episodes, tmp_path, caplog):
    """Six steps cannot teach the encoder where the arm is: the run says so, with both
    figures, and records the baseline it is measured against."""
    run = tmp_path / 'unlearned'
    with caplog.at_level('WARNING', logger='bc_robot.learning.trainer'):
        code = main(['train', str(episodes / 'ep*'), '--head', 'mse', '--out', str(run),
                     '--steps', '6', '--set', 'data.state_keys=[ee_rot6d, gripper]',
                     '--set', 'data.auxiliary_keys=[ee_position]', *TINY])
    assert code == 0
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['val_auxiliary_baseline_rmse'] > 0
    assert summary['val_auxiliary_rmse'] >= AUXILIARY_LEARNED_RATIO * summary[
        'val_auxiliary_baseline_rmse']
    assert f"did not generalise: validation RMSE {summary['val_auxiliary_rmse']:.4g}" in \
        caplog.text


@pytest.mark.parametrize('metrics, warned', [
    ({'val_auxiliary_rmse': 0.101, 'val_auxiliary_baseline_rmse': 0.06}, True),
    ({'val_auxiliary_rmse': 0.0478, 'val_auxiliary_baseline_rmse': 0.0675}, True),
    ({'val_auxiliary_rmse': 0.0227, 'val_auxiliary_baseline_rmse': 0.0615}, False),
    ({'val_auxiliary_rmse': 0.0, 'val_auxiliary_baseline_rmse': 0.0}, False),  # constant
    ({'val_loss': 1.0}, False)])                                        # no auxiliary keys
def test_auxiliary_warning_compares_the_error_with_guessing_the_mean(metrics, warned):
    warning = auxiliary_warning(metrics)
    assert (warning is not None) == warned
    if warned:
        assert f"{metrics['val_auxiliary_rmse']:.4g}" in warning and '--seed' in warning
