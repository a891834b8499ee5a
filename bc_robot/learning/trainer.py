"""The training loop: AdamW with warmup + cosine decay, gradient clipping, optional EMA,
validation on held-out episodes, loss curves, checkpoints, resume, `--init` fine-tuning and
multi-process DistributedDataParallel (torchrun sets RANK/WORLD_SIZE; gloo on CPU, NCCL on
CUDA).

Checkpoints are a dict of tensors and plain values written with `torch.save` and read back
with `torch.load(weights_only=True)`: never a pickled object, so a checkpoint from
elsewhere cannot run code. Everything export needs travels in it: the architecture, the
normalization statistics and a few held-out observations for the parity check.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from bc_robot.core.spec import NormStats
from bc_robot.learning.augment import YawAugment
from bc_robot.learning.config import TrainConfig
from bc_robot.learning.convert import EpisodeArrays
from bc_robot.learning.dataset import (BatchSampler, ChunkDataset, compute_stats,
                                       split_episodes)
from bc_robot.learning.plot import plot_losses
from bc_robot.learning.policy import BCPolicy, PolicyArch

LOG = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 'bc_robot.checkpoint/1'
ProgressFn = Callable[[int, int, dict[str, float]], None]


# --------------------------------------------------------------------------- checkpoints

def stats_to_json(stats: dict[str, NormStats]) -> str:
    return json.dumps({k: {f: list(getattr(v, f)) for f in ('mean', 'std', 'low', 'high')}
                       for k, v in stats.items()})


def stats_from_json(text: str) -> dict[str, NormStats]:
    return {k: NormStats(**v) for k, v in json.loads(text).items()}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write (a crash mid-save never leaves a half checkpoint named last.pt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.pt.tmp')
    torch.save(payload, tmp)
    os.replace(tmp, path)


def resolve_checkpoint(path: str | Path, which: str = 'last') -> Path:
    """A checkpoint file, or a run folder → its checkpoints/<which>.pt."""
    path = Path(path)
    if path.is_dir():
        candidate = path / 'checkpoints' / f'{which}.pt'
        if not candidate.is_file():
            raise ValueError(f'{path} has no checkpoints/{which}.pt (is it a training run '
                             f'folder?)')
        return candidate
    if not path.is_file():
        raise ValueError(f'checkpoint {path} does not exist')
    return path


def load_checkpoint(path: str | Path, which: str = 'last') -> dict[str, Any]:
    path = resolve_checkpoint(path, which)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the unpickler's protocol notes on bad files
            data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f'{path} is not a bc_robot checkpoint (weights_only load failed: '
                         f'{exc})') from None
    if not isinstance(data, dict) or data.get('format') != CHECKPOINT_FORMAT:
        raise ValueError(f'{path} is not a bc_robot checkpoint (format '
                         f'{data.get("format") if isinstance(data, dict) else type(data)!r})')
    data['path'] = str(path)
    return data


def policy_from_checkpoint(data: dict[str, Any], use_ema: bool = True
                           ) -> tuple[BCPolicy, dict[str, NormStats]]:
    arch = PolicyArch.from_json(json.loads(data['arch']))
    stats = stats_from_json(data['stats'])
    policy = BCPolicy(arch, stats)
    state = data['ema'] if use_ema and data.get('ema') else data['model']
    policy.load_state_dict(state)
    return policy, stats


def parity_observations(data: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """The held-out observations stored in a checkpoint, one dict per sample."""
    parity = data['parity']
    n = next(iter(parity.values())).shape[0]
    return [{k: v[i].numpy() for k, v in parity.items()} for i in range(n)]


# --------------------------------------------------------------------------- distributed

@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1)),
                   int(os.environ.get('LOCAL_RANK', 0)))


def pick_device(name: str, dist: DistInfo) -> torch.device:
    if name not in ('auto', 'cpu', 'cuda'):
        raise ValueError(f'device {name!r} must be auto, cpu or cuda')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device cuda requested but torch sees no CUDA device')
    if name == 'cuda' or (name == 'auto' and torch.cuda.is_available()):
        return torch.device('cuda', dist.local_rank % max(1, torch.cuda.device_count()))
    return torch.device('cpu')


# --------------------------------------------------------------------------- training

@dataclass
class TrainResult:
    run_dir: Path
    step: int
    seconds: float
    train_loss: float
    val_loss: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _observations(dataset: ChunkDataset, count: int) -> dict[str, torch.Tensor]:
    index = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    batch = dataset.batch(index)
    out = {f'image.{k}': v.clone() for k, v in batch.images.items()}
    if batch.state.shape[-1]:
        out['state'] = batch.state.clone()
    return out


def _init_from(policy: BCPolicy, data: dict[str, Any]) -> bool:
    """Copy every tensor of an earlier policy whose name and shape match (--init); True
    when the whole head came along."""
    source = data['ema'] if data.get('ema') else data['model']
    own = policy.state_dict()
    loaded = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(source) - set(loaded))
    if not any(k.startswith('encoder.') for k in loaded):
        raise ValueError(f'--init {data["path"]}: no encoder parameter matches this policy '
                         f'(different cameras or sizes?)')
    own.update(loaded)
    policy.load_state_dict(own)
    LOG.info('--init %s: copied %d tensors, skipped %d%s', data['path'], len(loaded),
             len(skipped), (' (' + ', '.join(skipped[:5]) + (' …' if len(skipped) > 5 else '')
                            + ')') if skipped else '')
    head = [k for k in own if k.startswith('head.')]
    return bool(head) and all(k in loaded for k in head)


class _EMA:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                self.state[key].copy_(value)


@torch.no_grad()
def evaluate(policy: BCPolicy, dataset: ChunkDataset, device: torch.device,
             batch_size: int, max_samples: int = 512, sample_count: int = 64,
             seed: int = 0) -> dict[str, float]:
    """Validation loss (fixed noise seed) and the position error (m) of sampled chunks
    against the labels on valid steps."""
    was_training = policy.training
    policy.eval()
    with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
        torch.manual_seed(seed)
        index = np.linspace(0, len(dataset) - 1, min(max_samples, len(dataset))).round()
        index = index.astype(int)
        total, weight = 0.0, 0.0
        for start in range(0, len(index), batch_size):
            batch = dataset.batch(index[start:start + batch_size]).to(device)
            total += float(policy.loss(batch)) * len(batch)
            weight += len(batch)
        pick = index[np.linspace(0, len(index) - 1, min(sample_count, len(index))).round()
                     .astype(int)]
        batch = dataset.batch(pick).to(device)
        chunk = policy.sample(batch.images, batch.state)
        error = torch.linalg.norm(chunk[..., :3] - batch.actions[..., :3], dim=-1)
        valid = batch.valid.float()
        position = float((error * valid).sum() / valid.sum().clamp_min(1))
        first = float(error[:, 0].mean())
        metrics = {'val_loss': total / max(weight, 1.0), 'val_position_error_m': position,
                   'val_first_action_error_m': first}
        if policy.arch.auxiliary_dim:  # an auxiliary head or an object readout
            truth = batch.auxiliary
            miss = policy.predict_auxiliary(batch.images, batch.state) - truth
            metrics['val_auxiliary_rmse'] = float(miss.square().mean().sqrt())
            # What always guessing the training labels' mean would score here: the yardstick
            # for whether the readout generalises (auxiliary_warning). Not the validation
            # labels' own spread: two or three validation episodes hold too few layouts.
            metrics['val_auxiliary_baseline_rmse'] = float(
                (truth - policy.auxiliary_mean).square().mean().sqrt())
    policy.train(was_training)
    return metrics


# A readout whose validation error is above this fraction of the baseline's has not
# learned to place objects in layouts it did not see. Eight runs on 20 push demonstrations
# (session 32, docs/BENCHMARKS.md): at 0.71-1.27 of it they scored 0-8 of 50, at 0.03-0.37
# 24-38 of 50.
AUXILIARY_LEARNED_RATIO = 0.5


def auxiliary_warning(metrics: dict[str, float]) -> str | None:
    """Why a run's auxiliary targets / object readout did not generalise, or None: a policy
    that cannot place the objects fails at the task without any other sign in its loss."""
    rmse = metrics.get('val_auxiliary_rmse')
    baseline = metrics.get('val_auxiliary_baseline_rmse')
    if rmse is None or not baseline or rmse < AUXILIARY_LEARNED_RATIO * baseline:
        return None
    return (f'the auxiliary targets / object readout did not generalise: validation RMSE '
            f'{rmse:.4g} against {baseline:.4g} for always guessing the training mean (ratio '
            f'{rmse / baseline:.2f} >= {AUXILIARY_LEARNED_RATIO}); the policy will not find the '
            f'objects. Train again with another --seed, more steps or more demonstrations')


def train(config: TrainConfig, episodes: list[EpisodeArrays], run_dir: str | Path,
          device: str = 'auto', resume: bool = False, init: str | Path | None = None,
          progress: ProgressFn | None = None, sources: list[str] | None = None
          ) -> TrainResult:
    """Train a policy on control-rate episodes; writes the run folder (see docs/training.md)."""
    dist = DistInfo.from_env()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / 'checkpoints'
    opt = config.train
    if opt.threads:
        torch.set_num_threads(opt.threads)
    torch.manual_seed(config.seed)
    dev = pick_device(device, dist)
    if dist.world_size > 1:
        import torch.distributed as torch_dist
        if not torch_dist.is_initialized():
            torch_dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
        if dev.type == 'cuda':
            torch.cuda.set_device(dev)

    want = (config.data.state_dim, config.data.history, config.data.chunk_length,
            config.data.action_dim)
    for e in episodes:
        got = (e.state.shape[1], e.history.shape[1], e.actions.shape[1], e.actions.shape[2])
        if got != want:
            raise ValueError(f'{e.source}: (state dim, history, chunk length, action dim) '
                             f'{got} does not match the config {want}')
    train_eps, val_eps = split_episodes(episodes, opt.val_fraction, config.seed)
    cams = [c.name for c in config.data.cameras]
    train_set = ChunkDataset(train_eps, cams)
    if val_eps and not any(e.weights.any() for e in val_eps):
        LOG.warning('validation episodes %s weigh 0 throughout: no validation',
                    [e.source for e in val_eps])
        val_eps = []
    val_set = ChunkDataset(val_eps, cams) if val_eps else None
    arch = PolicyArch.from_config(config)
    stats = compute_stats(train_eps, arch.action_frame, arch.readout_anchor)
    yaw = (YawAugment(opt.augment_yaw_deg, arch.state_keys, arch.auxiliary_keys,
                      arch.action_representation) if opt.augment_yaw_deg else None)
    if yaw is not None:
        stats = yaw.normalization(stats, actions_turn=arch.action_frame.rotation is None)

    resume_data = load_checkpoint(ckpt_dir / 'last.pt') if resume else None
    if resume_data is not None:
        stats = stats_from_json(resume_data['stats'])
    init_data = load_checkpoint(init) if init is not None and resume_data is None else None
    if init_data is not None:
        # Fine-tuning keeps the earlier policy's normalization: its weights mean something
        # only in those units (which is why absolute and relative positions cannot mix).
        earlier = PolicyArch.from_json(json.loads(init_data['arch'])).model
        if (earlier.relative_axes, earlier.action_frame) != (config.model.relative_axes,
                                                              config.model.action_frame):
            raise ValueError(f'--init {init}: model.relative_position / action_frame are '
                             f'{earlier.relative_position} / {earlier.action_frame} there and '
                             f'{config.model.relative_position} / {config.model.action_frame} '
                             f'here; fine-tune with the same')
        # (the auxiliary targets' own, when the earlier policy had none, are this data's)
        stats = {**stats, **stats_from_json(init_data['stats'])}
    policy = BCPolicy(arch, stats)
    head_loaded = _init_from(policy, init_data) if init_data is not None else False
    policy.encoder.augment_shift = opt.augment_shift
    policy.encoder.state_noise = opt.state_noise
    policy.readout_samples = opt.readout_samples
    policy.to(dev)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, opt.warmup_steps, opt.steps))
    per_rank = max(1, math.ceil(opt.batch_size / dist.world_size))
    sampler = BatchSampler(len(train_set), per_rank, config.seed, dist.rank, dist.world_size)
    ema = _EMA(policy, opt.ema_decay) if opt.ema_decay > 0 else None
    step = 0
    history: dict[str, list] = {'train': [], 'val': []}
    best_val = math.inf
    if resume_data is not None:
        policy.load_state_dict(resume_data['model'])
        optimizer.load_state_dict(resume_data['optimizer'])
        scheduler.load_state_dict(resume_data['scheduler'])
        sampler.load_state_dict(resume_data['sampler'])
        step = int(resume_data['step'])
        history = json.loads(resume_data['history'])
        best_val = float(resume_data.get('best_val', math.inf))
        if ema is not None and resume_data.get('ema'):
            ema.state = {k: v.to(dev) for k, v in resume_data['ema'].items()}
        torch.set_rng_state(resume_data['rng'])
        LOG.info('resumed %s at step %d', run_dir, step)
    if resume_data is None and not head_loaded:
        # Before DDP wraps the model: DDP then broadcasts rank 0's initialisation.
        policy.initialize(train_set.batch(BatchSampler(len(train_set), opt.batch_size,
                                                       config.seed).next()).to(dev))
    model: torch.nn.Module = policy
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[dev.index] if dev.type == 'cuda' else None)

    parity = _observations(val_set or train_set, opt.parity_samples)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / 'config.yaml').write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        LOG.info('training %s head on %d train / %d val episodes (%d / %d samples), %d '
                 'parameters, device %s, %d process(es)', config.head, len(train_eps),
                 len(val_eps), len(train_set), len(val_set) if val_set else 0,
                 sum(p.numel() for p in params), dev, dist.world_size)

    def payload(final_metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            'format': CHECKPOINT_FORMAT, 'arch': json.dumps(arch.to_json()),
            'config': json.dumps(config.to_dict()), 'stats': stats_to_json(stats),
            'model': {k: v.detach().cpu() for k, v in policy.state_dict().items()},
            'ema': {k: v.cpu() for k, v in ema.state.items()} if ema else {},
            'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
            'sampler': sampler.state_dict(), 'step': step, 'best_val': best_val,
            'history': json.dumps(history), 'rng': torch.get_rng_state(),
            'parity': parity, 'sources': json.dumps(sources or []),
            'metrics': json.dumps(final_metrics), 'world_size': dist.world_size}

    def validate() -> dict[str, float]:
        target = policy
        saved = None
        if ema is not None:
            saved = {k: v.clone() for k, v in policy.state_dict().items()}
            policy.load_state_dict(ema.state)
        metrics = evaluate(target, val_set or train_set, dev, per_rank, seed=config.seed)
        if saved is not None:
            policy.load_state_dict(saved)
        return metrics

    started = time.monotonic()
    cpu_started = time.process_time()
    start_step = step
    last_loss, metrics = math.nan, {}
    policy.train()
    while step < opt.steps:
        batch = train_set.batch(sampler.next())
        batch = (yaw(batch) if yaw is not None else batch).to(dev)
        loss = model(batch.images, batch.state, batch.actions, batch.valid, batch.weight,
                     batch.auxiliary)
        if not torch.isfinite(loss):
            raise ValueError(f'training loss became {float(loss)} at step {step} '
                             f'(lower train.lr or check the data)')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, opt.grad_clip)
        lr = optimizer.param_groups[0]['lr']  # this step's rate, for metrics.jsonl
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(policy)
        step += 1
        last_loss = float(loss.detach())
        history['train'].append((step, last_loss))
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_started
        out_of_time = (opt.max_minutes > 0 and elapsed > 60 * opt.max_minutes) or (
            opt.max_cpu_minutes > 0 and cpu > 60 * opt.max_cpu_minutes)
        if dist.world_size > 1:
            flag = torch.tensor([1.0 if out_of_time else 0.0], device=dev)
            torch.distributed.all_reduce(flag)
            out_of_time = bool(flag.item() > 0)
        done = step >= opt.steps or out_of_time
        if dist.main:
            if step % opt.val_every == 0 or done:
                metrics = validate()
                history['val'].append((step, metrics['val_loss']))
                with open(run_dir / 'metrics.jsonl', 'a') as handle:
                    handle.write(json.dumps({'step': step, 'train_loss': last_loss, 'lr': lr,
                                             'elapsed_s': round(elapsed, 2),
                                             'cpu_s': round(cpu, 2), **metrics}) + '\n')
                plot_losses(run_dir / 'loss_curves.png', history['train'], history['val'],
                            title=f'{config.head} head')
                if val_set is not None and metrics['val_loss'] < best_val:
                    best_val = metrics['val_loss']
                    save_checkpoint(ckpt_dir / 'best.pt', payload(metrics))
            if step % opt.checkpoint_every == 0 or done:
                save_checkpoint(ckpt_dir / 'last.pt', payload(metrics))
            if progress is not None:
                rate = (step - start_step) / max(elapsed, 1e-9)
                progress(step, opt.steps, {'loss': last_loss, 'it_s': rate,
                                           'eta_s': (opt.steps - step) / max(rate, 1e-9),
                                           **metrics})
        if out_of_time:
            LOG.warning('stopping at step %d: time budget reached (train.max_minutes = %g, '
                        'train.max_cpu_minutes = %g)', step, opt.max_minutes,
                        opt.max_cpu_minutes)
            break
    seconds = time.monotonic() - started
    summary = {'steps': step, 'train_seconds': round(seconds, 2),
               'train_cpu_seconds': round(time.process_time() - cpu_started, 2),
               'train_loss': last_loss,
               'world_size': dist.world_size, **metrics}
    if dist.world_size > 1:
        summary['ranks_in_sync'] = _ranks_in_sync(policy, dev)
    if dist.main:
        save_checkpoint(ckpt_dir / 'last.pt', payload(summary))
        (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
        warning = auxiliary_warning(metrics)
        if warning:
            LOG.warning('%s: %s', run_dir, warning)
    if dist.world_size > 1:
        torch.distributed.barrier()
    return TrainResult(run_dir, step, seconds, last_loss, metrics.get('val_loss'), summary)


def _ranks_in_sync(policy: BCPolicy, device: torch.device) -> bool:
    """Every rank holds the same parameters (DDP kept them in step)."""
    import torch.distributed as torch_dist
    checksum = torch.stack([p.detach().double().sum() for p in policy.parameters()]).sum()
    gathered = [torch.zeros_like(checksum) for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(gathered, checksum.to(device))
    return bool(all(torch.allclose(g, gathered[0], rtol=0, atol=1e-9) for g in gathered))


def cleanup_distributed() -> None:
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
