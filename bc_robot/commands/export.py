"""`bc-robot export RUN --out models/NAME`: checkpoint → policy.onnx + policy.json.

The graph is checked against torch on held-out observations (stored in the checkpoint, or
converted from --data episodes) with the same noise and prefix inputs; on disagreement
beyond --tolerance nothing is written and the command exits 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='training run folder or checkpoint .pt')
    parser.add_argument('--out', required=True, help='model folder to write (models/<name>)')
    parser.add_argument('--name', help='policy name in policy.json (default: folder name)')
    parser.add_argument('--which', default='last', choices=('last', 'best'),
                        help='checkpoint of a run folder to export (default: last)')
    parser.add_argument('--no-ema', action='store_true', help='export the raw weights even '
                        'when the run kept an EMA copy')
    parser.add_argument('--sampler', action='append', default=[], metavar='KEY=VALUE',
                        help='sampler setting baked into the graph, e.g. steps=10, '
                             'temperature=0.5, z_scale=1.0, std_scale=0')
    parser.add_argument('--tolerance', type=float, default=None,
                        help='max |onnx - torch| in normalized action units (default 1e-3)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 17)')
    parser.add_argument('--data', nargs='+', help='episodes for the held-out parity samples '
                        '(default: the held-out samples stored in the checkpoint)')
    parser.add_argument('--samples', type=int, default=16, help='parity samples from --data')


def _parse_sampler(items: list[str]) -> dict[str, Any]:
    settings = {}
    for item in items:
        if '=' not in item:
            raise ValueError(f'--sampler {item!r} must look like key=value')
        key, raw = item.split('=', 1)
        settings[key.strip()] = yaml.safe_load(raw)
    return settings


def _data_observations(checkpoint: dict[str, Any], patterns: list[str], count: int):
    import numpy as np

    from bc_robot.learning.config import config_from_dict
    from bc_robot.learning.convert import convert_episodes, find_episodes
    from bc_robot.learning.dataset import ChunkDataset
    config = config_from_dict(json.loads(checkpoint['config']))
    episodes = convert_episodes(find_episodes(patterns), config.data)
    dataset = ChunkDataset(episodes, [c.name for c in config.data.cameras])
    index = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    batch = dataset.batch(index)
    observations = []
    for i in range(len(index)):
        obs = {f'image.{k}': v[i].numpy() for k, v in batch.images.items()}
        if batch.state.shape[-1]:
            obs['state'] = batch.state[i].numpy()
        observations.append(obs)
    return observations


def export_checkpoint(checkpoint: str | Path, out: Path, name: str | None = None,
                      which: str = 'last', use_ema: bool = True,
                      sampler: dict[str, Any] | None = None, tolerance: float | None = None,
                      opset: int = 17, data: list[str] | None = None, samples: int = 16):
    from bc_robot.learning.export import DEFAULT_TOLERANCE, export_policy, git_commit
    from bc_robot.learning.trainer import (load_checkpoint, parity_observations,
                                           policy_from_checkpoint)
    ckpt = load_checkpoint(checkpoint, which)
    policy, stats = policy_from_checkpoint(ckpt, use_ema=use_ema)
    if sampler:
        policy.head.set_sampler(**sampler)
    observations = _data_observations(ckpt, data, samples) if data else \
        parity_observations(ckpt)
    provenance = {
        'checkpoint': ckpt['path'], 'step': int(ckpt['step']),
        'data': json.loads(ckpt.get('sources', '[]')),
        'config': json.loads(ckpt['config']), 'metrics': json.loads(ckpt.get('metrics', '{}')),
        'commit': git_commit(), 'exported_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'ema': bool(use_ema and ckpt.get('ema')),
    }
    return export_policy(policy, stats, out, observations, name=name, provenance=provenance,
                         tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
                         opset=opset)


def run(args: argparse.Namespace) -> int:
    try:
        result = export_checkpoint(args.checkpoint, Path(args.out), name=args.name,
                                   which=args.which, use_ema=not args.no_ema,
                                   sampler=_parse_sampler(args.sampler),
                                   tolerance=args.tolerance, opset=args.opset,
                                   data=args.data, samples=args.samples)
    except ValueError as exc:
        print(f'bc-robot export: {exc}', file=sys.stderr)
        return 2
    spec = result.spec
    print(f'wrote {result.model_dir}/policy.onnx ({result.onnx_bytes / 1e6:.1f} MB) + '
          f'policy.json: {spec.head} head, chunk {spec.chunk_length} x {spec.action_dim}, '
          f'inputs {", ".join(t.name for t in spec.inputs)}; parity max error '
          f'{result.max_error:.2e} over {result.samples} held-out samples')
    return 0
