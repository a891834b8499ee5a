"""Per policy head: training time and ONNX Runtime CPU inference latency.

For each head: train with its config (config/train/<head>.yaml, overridable) on recorded
episodes (--data) or on synthetic recorded-format episodes, export with the parity check,
then time `session.run` of the exported graph on CPU exactly as the policy node calls it
(batch 1, fresh noise, zero-weight prefix). Prints median / p99 / max and writes --json.

    .venv/bin/python bench/heads.py --steps 200 --json heads.json
    .venv/bin/python bench/heads.py --data 'episodes/push/*' --steps 3000 --heads flow mse \
        --rollouts 20

--rollouts N also runs each exported head closed loop on the simulated push task (N seeded
scenes from --rollout-seed, in-process and faster than real time: bc_robot.learning.rollout;
--rollout-executor rtc --rollout-delay-ms 100 runs the deployed executor on a virtual clock)
and reports rollout_success = successes / N with the seeds.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADS = ('mse', 'gmm', 'discrete', 'act', 'diffusion', 'flow')


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000.0
    return {'median_ms': float(np.median(a)), 'p99_ms': float(np.percentile(a, 99)),
            'max_ms': float(a.max()), 'count': int(a.size)}


def _synthetic_episodes(folder: Path, count: int) -> list[Path]:
    from bc_robot.learning.synthetic import SyntheticEpisode, write_episode
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        goal = (float(rng.uniform(0.4, 0.7)), float(rng.uniform(-0.2, 0.2)))
        paths.append(write_episode(folder / f'ep{i:03d}', SyntheticEpisode(
            goal=goal, duration_s=4.0, cameras=('front',), image_size=(240, 320))))
    return paths


def bench_head(head: str, paths: list[Path], work: Path, args) -> dict:
    from bc_robot.commands.export import export_checkpoint
    from bc_robot.commands.train import default_config_path
    from bc_robot.learning.config import load_config, parse_override
    from bc_robot.learning.convert import convert_episodes
    from bc_robot.learning.evaluate import OnnxPolicy
    from bc_robot.learning.trainer import train
    overrides = dict(parse_override(s) for s in args.set)
    overrides.update({'train.steps': args.steps, 'train.threads': args.threads,
                      'train.val_every': max(1, args.steps), 'train.checkpoint_every':
                      max(1, args.steps)})
    config = load_config(args.config or default_config_path(head), {'head': head,
                                                                     **overrides})
    began = time.perf_counter()
    episodes = convert_episodes([str(p) for p in paths], config.data, config.dagger)
    convert_s = time.perf_counter() - began
    result = train(config, episodes, work / f'run-{head}', device='cpu')
    began = time.perf_counter()
    export = export_checkpoint(work / f'run-{head}', work / f'model-{head}')
    export_s = time.perf_counter() - began
    row = {'head': head, 'steps': result.step, 'train_s': result.seconds,
           'ms_per_step': 1000.0 * result.seconds / max(1, result.step),
           # process CPU time (all threads): comparable on a shared, loaded machine
           'cpu_ms_per_step': 1000.0 * result.metrics['train_cpu_seconds'] / max(1, result.step),
           'convert_s': convert_s, 'export_s': export_s,
           'onnx_mb': export.onnx_bytes / 1e6, 'parity_max_error': export.max_error,
           'val_loss': result.metrics.get('val_loss'),
           'val_position_error_mm': 1000 * result.metrics.get('val_position_error_m', np.nan)}
    for threads in args.ort_threads:
        policy = OnnxPolicy(work / f'model-{head}', threads=threads)
        observation = {}
        for name, (dtype, shape) in policy.spec.expected_inputs().items():
            if name.startswith('image.'):
                observation[name] = np.random.default_rng(0).integers(0, 256, shape,
                                                                      dtype=np.uint8)
            elif name == 'state':
                mean = np.asarray(policy.spec.normalization['state'].mean, dtype=np.float32)
                observation[name] = np.broadcast_to(mean, shape).copy()
        for _ in range(10):
            policy(observation)
        times, cpu = [], []
        for _ in range(args.iterations):
            feed = policy.feed(observation)
            t0, c0 = time.perf_counter(), time.process_time()
            policy.session.run(['actions'], feed)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        row[f'onnx_cpu_{threads}t'] = {**_stats(times),
                                       'cpu_median_ms': 1000 * float(np.median(cpu))}
    if args.rollouts:
        from bc_robot.learning.rollout import RolloutConfig, evaluate_model
        summary = evaluate_model(work / f'model-{head}', RolloutConfig(
            episodes=args.rollouts, seed=args.rollout_seed, timeout_s=args.rollout_timeout,
            threads=args.ort_threads[0], executor=args.rollout_executor,
            delay_s=args.rollout_delay_ms / 1000.0))
        row.update({'rollout_success': summary['rate'], 'rollout_successes':
                    summary['successes'], 'rollout_seeds': summary['seeds'],
                    'rollout_wall_s_per_episode': summary['wall_s_per_episode']})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--heads', nargs='+', default=list(HEADS), choices=HEADS)
    parser.add_argument('--data', nargs='+', help='recorded episodes (default: synthetic)')
    parser.add_argument('--synthetic-episodes', type=int, default=8)
    parser.add_argument('--config', help='one config for every head (default: per head)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    parser.add_argument('--steps', type=int, default=200, help='training steps per head')
    parser.add_argument('--threads', type=int, default=2, help='torch training threads')
    parser.add_argument('--ort-threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--iterations', type=int, default=200, help='timed inferences')
    parser.add_argument('--rollouts', type=int, default=0, metavar='N',
                        help='closed-loop push episodes per exported head (0 = none)')
    parser.add_argument('--rollout-seed', type=int, default=0,
                        help='first scene seed of the rollouts (demos use seeds >= 1000)')
    parser.add_argument('--rollout-timeout', type=float, default=30.0,
                        help='sim seconds per rollout episode')
    parser.add_argument('--rollout-executor', default=None,
                        choices=('sync', 'ensemble', 'async', 'rtc'),
                        help="the policy node's executor on a virtual clock (default: none, "
                             're-plan every half chunk with zero latency)')
    parser.add_argument('--rollout-delay-ms', type=float, default=0.0,
                        help='--rollout-executor: observation → chunk delay (ms)')
    parser.add_argument('--json', help='write the figures here')
    args = parser.parse_args(argv)
    if args.rollouts < 0:
        parser.error(f'--rollouts must be >= 0, got {args.rollouts}')
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-heads-') as tmp:
        work = Path(tmp)
        if args.data:
            from bc_robot.learning.convert import find_episodes
            paths = find_episodes(args.data)
        else:
            paths = _synthetic_episodes(work / 'episodes', args.synthetic_episodes)
        for head in args.heads:
            row = bench_head(head, paths, work, args)
            rows.append(row)
            ort = '  '.join(f'ORT {k[9:]}: median {v["median_ms"]:.2f} p99 {v["p99_ms"]:.2f} '
                            f'max {v["max_ms"]:.2f} ms' for k, v in row.items()
                            if k.startswith('onnx_cpu_'))
            print(f'{head:9s} train {row["steps"]} steps {row["train_s"]:.1f} s '
                  f'({row["ms_per_step"]:.0f} ms/step wall, {row["cpu_ms_per_step"]:.0f} ms CPU)'
                  f'  export {row["export_s"]:.1f} s '
                  f'{row["onnx_mb"]:.1f} MB  {ort}' + (
                      f'  rollout {row["rollout_successes"]}/{args.rollouts} (seeds '
                      f'{args.rollout_seed}-{args.rollout_seed + args.rollouts - 1})'
                      if args.rollouts else ''), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({'data': [str(p) for p in paths] if args.data
                                               else f'{args.synthetic_episodes} synthetic',
                                               'rows': rows}, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
