"""`bc-robot train DATA... --head flow`: recorded episodes → a trained policy run folder.

Multi-GPU (or multi-process CPU) training runs the same command under torchrun, e.g.
`torchrun --standalone --nproc_per_node=2 -m bc_robot.cli train DATA --head flow`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger('bc_robot.train')

HEADS = ('mse', 'gmm', 'discrete', 'act', 'diffusion', 'flow')


def default_config_path(head: str) -> Path | None:
    """config/train/<head>.yaml from the source tree or the installed share folder."""
    candidates = [Path(__file__).resolve().parents[2] / 'config' / 'train' / f'{head}.yaml']
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('bc_robot')) / 'config' / 'train'
                          / f'{head}.yaml')
    except Exception:  # not installed through colcon: only the source tree
        pass
    return next((p for p in candidates if p.is_file()), None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('data', nargs='+', help='episode folders or globs (a folder of '
                        'episodes counts too), e.g. "episodes/push/*"')
    parser.add_argument('--head', choices=HEADS, help='policy head (default: the config '
                        'file\'s, else flow)')
    parser.add_argument('--config', help='training YAML (default: config/train/<head>.yaml)')
    parser.add_argument('--seed', type=int, help='random seed (split, init, batches)')
    parser.add_argument('--out', help='run folder (default: runs/<head>-<time>)')
    parser.add_argument('--steps', type=int, help='optimizer steps (train.steps)')
    parser.add_argument('--batch-size', type=int, help='global batch size (train.batch_size)')
    parser.add_argument('--max-minutes', type=float, help='stop after this wall time '
                        '(train.max_minutes)')
    parser.add_argument('--max-cpu-minutes', type=float, help='stop after this process CPU '
                        'time, all threads (train.max_cpu_minutes)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override any config value, e.g. --set model.d_model=64')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='CPU by default, CUDA when present')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in --out from checkpoints/last.pt')
    parser.add_argument('--init', help='start from an earlier policy (run folder or .pt): '
                        'pre-train broad, fine-tune narrow')
    parser.add_argument('--intervention-weight', type=float,
                        help='weight of human-correction samples (dagger.intervention_weight)')
    parser.add_argument('--pre-intervention-window', type=float, metavar='SECONDS',
                        help='window before each takeover (dagger.pre_intervention_window_s)')
    parser.add_argument('--pre-intervention-weight', type=float,
                        help='weight of samples in that window (0 drops them)')
    parser.add_argument('--export', metavar='MODEL_DIR',
                        help='export the trained policy to this model folder afterwards')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


class ProgressBar:
    """One line with a bar, loss, validation figures, speed and ETA; redrawn in place on a
    terminal, printed every ~10 s otherwise (CI logs)."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream, self.width = stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self._last = 0.0

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(max(0, seconds))
        return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}' \
            if seconds >= 3600 else f'{seconds // 60:02d}:{seconds % 60:02d}'

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        final = step >= total
        if not final and now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        filled = int(self.width * step / max(total, 1))
        bar = '#' * filled + '-' * (self.width - filled)
        text = f'[{bar}] {step}/{total} loss {metrics.get("loss", float("nan")):.4f}'
        if 'val_loss' in metrics:
            text += (f' val {metrics["val_loss"]:.4f} pos_err '
                     f'{1000 * metrics.get("val_position_error_m", float("nan")):.1f}mm')
        text += f' {metrics.get("it_s", 0):.1f} it/s ETA {self._clock(metrics.get("eta_s", 0))}'
        if self.tty:
            self.stream.write('\r' + text + ('\n' if final else ''))
        else:
            self.stream.write(text + '\n')
        self.stream.flush()


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from bc_robot.learning.config import parse_override
    overrides = dict(parse_override(item) for item in args.set)
    for flag, key in (('head', 'head'), ('seed', 'seed'), ('steps', 'train.steps'),
                      ('batch_size', 'train.batch_size'), ('max_minutes', 'train.max_minutes'),
                      ('max_cpu_minutes', 'train.max_cpu_minutes'),
                      ('intervention_weight', 'dagger.intervention_weight'),
                      ('pre_intervention_window', 'dagger.pre_intervention_window_s'),
                      ('pre_intervention_weight', 'dagger.pre_intervention_weight')):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    from bc_robot.learning.config import load_config
    from bc_robot.learning.convert import convert_episodes, find_episodes
    from bc_robot.learning.trainer import DistInfo, cleanup_distributed, train
    try:
        config_path = args.config or default_config_path(args.head or 'flow')
        config = load_config(config_path, overrides_from_args(args))
        from bc_robot.learning.heads import HEADS
        HEADS[config.head].check_options(config.model.head_options)
        if args.resume and not args.out:
            raise ValueError('--resume needs --out RUN_FOLDER (the run to continue)')
        out = Path(args.out or f'runs/{config.head}-{time.strftime("%Y%m%d-%H%M%S")}')
        paths = find_episodes(args.data)
        log.info('config %s, %d episode(s), run folder %s', config_path or '(defaults)',
                 len(paths), out)
        episodes = convert_episodes(paths, config.data, config.dagger)
        dist = DistInfo.from_env()
        progress = None if args.no_progress or not dist.main else ProgressBar()
        result = train(config, episodes, out, device=args.device, resume=args.resume,
                       init=args.init, progress=progress, sources=[str(p) for p in paths])
    except ValueError as exc:
        print(f'bc-robot train: {exc}', file=sys.stderr)
        return 2
    finally:
        if 'cleanup_distributed' in locals():
            cleanup_distributed()
    if not DistInfo.from_env().main:
        return 0
    m = result.metrics
    print(f'trained {config.head} for {result.step} steps in {result.seconds:.0f} s: train '
          f'loss {result.train_loss:.4f}' + (f', val loss {m["val_loss"]:.4f}, position error '
                                              f'{1000 * m["val_position_error_m"]:.1f} mm'
                                              if 'val_loss' in m else ''))
    print(f'run folder: {out} (checkpoints/, loss_curves.png, metrics.jsonl)')
    if args.export:
        from bc_robot.commands.export import export_checkpoint
        try:
            export_checkpoint(out, Path(args.export))
        except ValueError as exc:
            print(f'bc-robot train: export failed: {exc}', file=sys.stderr)
            return 2
        print(f'exported {args.export}/policy.onnx + policy.json')
    return 0
