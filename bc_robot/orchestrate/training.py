"""Train and export a policy through the project's trainer API (`bc-robot train`'s pieces:
config files, converter, trainer, exporter), and count the labelled samples that went in.

Two aggregation variants for HG-DAgger data, in the trainer's own terms (config/train/*.yaml
`dagger:` section):

- `plain`: HG-DAgger's aggregation: demos and the human's corrections weigh 1, the
  policy-driven parts of correction episodes 0 (what the policy did alone is not a label).
- `weighted`: the config file's intervention weighting (IWR / Sirius style: corrections up,
  the window just before a takeover down), optionally with another intervention weight.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger('bc_robot.orchestrate')

VARIANTS = ('plain', 'weighted')
# HG-DAgger as published: the human's labels are aggregated, what the policy did on its own
# is not a label (weight 0), and the policy drives ~80 % of a correction episode. On one
# round of 15 corrections: weight 1 2/20, weight 0 7, 3 and 2 of 20 over three training
# seeds (docs/BENCHMARKS.md) — within noise; the published definition decides.
PLAIN = {'dagger.intervention_weight': 1.0, 'dagger.pre_intervention_window_s': 0.0,
         'dagger.pre_intervention_weight': 0.0, 'dagger.robot_weight': 0.0,
         'dagger.demo_weight': 1.0}


@dataclass(frozen=True)
class TrainSettings:
    """What `bc-robot train` would be given. `config` is the training YAML (default
    config/train/<head>.yaml); `head` and `steps` None take the config file's (mse without
    one); `image_size` (height, width) resizes every camera of the config; `overrides` are
    `--set` pairs; `threads` torch CPU threads."""

    head: str | None = None
    config: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    image_size: tuple[int, int] | None = None
    cameras: tuple[str, ...] | None = None
    threads: int = 1
    seed: int = 0
    device: str = 'auto'
    intervention_weight: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.config is not None and not Path(self.config).is_file():
            raise ValueError(f'training config {self.config!r} is not a file')
        if self.steps is not None and not (isinstance(self.steps, int)
                                           and 1 <= self.steps <= 10_000_000):
            raise ValueError(f'train steps = {self.steps!r} must be an int in [1, 1e7]')
        if self.batch_size is not None and not 1 <= self.batch_size <= 65536:
            raise ValueError(f'batch size = {self.batch_size!r} must be in [1, 65536]')
        if self.image_size is not None:
            h, w = self.image_size
            if not (8 <= h <= 2048 and 8 <= w <= 2048):
                raise ValueError(f'image size {h}x{w} must be within [8, 2048] per side')
        if not 1 <= self.threads <= 256:
            raise ValueError(f'train threads = {self.threads!r} must be in [1, 256]')
        if self.intervention_weight is not None and not (
                math.isfinite(self.intervention_weight) and 0 <= self.intervention_weight <= 100):
            raise ValueError(f'intervention weight = {self.intervention_weight!r} must be in '
                             f'[0, 100]')

    def config_overrides(self, variant: str) -> dict[str, Any]:
        if variant not in VARIANTS:
            raise ValueError(f'aggregation variant {variant!r} is not one of {VARIANTS}')
        out: dict[str, Any] = {'seed': self.seed, 'train.threads': self.threads}
        if self.head is not None:
            out['head'] = self.head
        if self.steps is not None:
            out['train.steps'] = self.steps
        if self.batch_size is not None:
            out['train.batch_size'] = self.batch_size
        out.update(PLAIN if variant == 'plain' else {})
        if variant == 'weighted' and self.intervention_weight is not None:
            out['dagger.intervention_weight'] = self.intervention_weight
        out.update(self.overrides)
        return out


@dataclass
class TrainOutcome:
    model_dir: Path
    run_dir: Path
    variant: str
    episodes: int
    samples: dict[str, float]
    seconds: float
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {'model_dir': str(self.model_dir), 'run_dir': str(self.run_dir),
                'variant': self.variant, 'episodes': self.episodes, 'samples': self.samples,
                'seconds': self.seconds, 'metrics': self.metrics}


def count_samples(episodes: Sequence[Any]) -> dict[str, float]:
    """Labelled samples by source: `demo` (demonstrations), `correction` (the human drove
    inside a policy episode), `robot` (the policy drove: labelled by what was executed);
    `labelled` = demo + correction (what a person labelled), `weight` = sum of weights."""
    demo = correction = robot = 0
    weight = 0.0
    for e in episodes:
        n = len(e)
        weight += float(e.weights.sum())
        if e.kind == 'demo':
            demo += n
        else:
            human = int(e.human.sum())
            correction += human
            robot += n - human
    return {'demo': demo, 'correction': correction, 'robot': robot,
            'labelled': demo + correction, 'total': demo + correction + robot,
            'weight': round(weight, 3)}


def correction_samples(paths: Sequence[Path], settings: TrainSettings) -> int:
    """Samples the human labelled in these correction episodes, as training would count them
    (same converter and config), so a label budget is checked on the real figure."""
    from bc_robot.learning.convert import convert_episodes
    config = training_config(settings)
    episodes = convert_episodes([str(p) for p in paths], config.data, config.dagger)
    return int(count_samples(episodes)['correction'])


def camera_names(settings: TrainSettings) -> list[str]:
    """The cameras the trained policy will use (so the sim renders only those)."""
    return [c.name for c in training_config(settings).data.cameras]


def training_config(settings: TrainSettings, variant: str = 'plain'):
    """The config file with the settings applied (cameras renamed/resized keep their crops,
    which are in source pixels)."""
    from bc_robot.commands.train import default_config_path
    from bc_robot.learning.config import load_config
    path = settings.config or default_config_path(settings.head or 'mse')
    overrides = settings.config_overrides(variant)
    config = load_config(path, overrides)
    if settings.image_size is not None or settings.cameras is not None:
        base = {c.name: c for c in config.data.cameras}
        first = config.data.cameras[0]
        names = settings.cameras or tuple(base)
        h, w = settings.image_size or (first.height, first.width)
        overrides['data.cameras'] = [
            {'name': n, 'height': h, 'width': w,
             'crop': list(base[n].crop) if n in base else []} for n in names]
        config = load_config(path, overrides)
    return config


def train_policy(paths: Sequence[Path], run_dir: Path, model_dir: Path,
                 settings: TrainSettings, variant: str = 'weighted',
                 init: Path | None = None) -> TrainOutcome:
    """Convert the episodes, train (from `init`, a run folder, when fine-tuning), export to
    `model_dir` (policy.onnx + policy.json, with the export's parity check). ValueError
    (from the converter/trainer/exporter) names what is wrong with the data or settings."""
    from bc_robot.commands.export import export_checkpoint
    from bc_robot.learning.convert import convert_episodes
    from bc_robot.learning.trainer import train
    began = time.monotonic()
    config = training_config(settings, variant)
    episodes = convert_episodes([str(p) for p in paths], config.data, config.dagger)
    samples = count_samples(episodes)
    log.info('training %s (%s) on %d episode(s): %s', run_dir.name, variant, len(episodes),
             samples)
    result = train(config, episodes, run_dir, device=settings.device, progress=None,
                   init=str(init) if init is not None else None,
                   sources=[str(p) for p in paths])
    export_checkpoint(run_dir, Path(model_dir), name=Path(model_dir).name)
    metrics = {k: v for k, v in dict(result.metrics).items()
               if isinstance(v, (int, float, str))}
    metrics['train_loss'] = result.train_loss
    return TrainOutcome(Path(model_dir), Path(run_dir), variant, len(episodes), samples,
                        time.monotonic() - began, metrics)
