"""The policy network: observation encoder (one CNN per camera + state MLP over the history)
feeding one of the chunked heads, with normalization inside the module so the exported
ONNX graph takes raw uint8 images and raw-unit state and returns raw-unit actions.

`PolicyArch` is everything needed to rebuild the network from a checkpoint (JSON-able,
stored in it), so export never needs the training data or config files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bc_robot.core.spec import ACTION_DIMS, STATE_KEY_DIMS, CameraSpec, NormStats
from bc_robot.core.state import state_slice
from bc_robot.learning.config import ModelConfig, TrainConfig
from bc_robot.learning.dataset import Batch
from bc_robot.learning.frames import ActionFrame, objects_from_table, objects_on_table
from bc_robot.learning.heads import HEADS, DiscreteHead
from bc_robot.learning.nets import MLP, CameraEncoder, ObjectReadout, random_shift


@dataclass(frozen=True)
class PolicyArch:
    head: str
    cameras: tuple[CameraSpec, ...]
    state_keys: tuple[str, ...]
    history: int
    chunk_length: int
    control_rate_hz: float
    action_representation: str
    model: ModelConfig = field(default_factory=ModelConfig)
    padding_weight: float = 1.0
    auxiliary_keys: tuple[str, ...] = ()  # predicted from the context, training only
    auxiliary_weight: float = 1.0

    @property
    def state_dim(self) -> int:
        return sum(STATE_KEY_DIMS[k] for k in self.state_keys)

    @property
    def auxiliary_dim(self) -> int:
        return sum(STATE_KEY_DIMS[k] for k in self.auxiliary_keys)

    @property
    def action_dim(self) -> int:
        return ACTION_DIMS[self.action_representation]

    @property
    def action_frame(self) -> ActionFrame:
        """The frame the network predicts in (model.relative_position, model.action_frame)."""
        m = self.model
        if not m.relative_axes:
            return ActionFrame()
        return ActionFrame(
            position=state_slice(self.state_keys, 'ee_position'),
            mask=tuple(float(i in m.relative_axes) for i in range(3)),
            rotation=state_slice(self.state_keys, 'ee_rot6d') if m.action_frame == 'tool'
            else None)

    @property
    def readout_anchor(self) -> slice | None:
        """Where the TCP is in the state, for an object readout's table positions."""
        return (state_slice(self.state_keys, 'ee_position') if self.model.object_readout
                else None)

    @classmethod
    def from_config(cls, config: TrainConfig) -> PolicyArch:
        d = config.data
        return cls(head=config.head, cameras=d.cameras, state_keys=d.state_keys,
                   history=d.history, chunk_length=d.chunk_length,
                   control_rate_hz=float(d.control_rate_hz),
                   action_representation=d.action_representation, model=config.model,
                   padding_weight=float(config.train.padding_weight),
                   auxiliary_keys=d.auxiliary_keys,
                   auxiliary_weight=float(config.train.auxiliary_weight))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data['cameras'] = [dict(dataclasses.asdict(c), crop=list(c.crop)) for c in self.cameras]
        data['state_keys'] = list(self.state_keys)
        data['auxiliary_keys'] = list(self.auxiliary_keys)
        data['model']['channels'] = list(self.model.channels)
        data['model']['frame_only_keys'] = list(self.model.frame_only_keys)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyArch:
        data = dict(data)
        data['cameras'] = tuple(CameraSpec(**{**c, 'crop': tuple(c.get('crop', ()))})
                                for c in data['cameras'])
        data['state_keys'] = tuple(data['state_keys'])
        data['auxiliary_keys'] = tuple(data.get('auxiliary_keys', ()))
        data['model'] = ModelConfig(**data['model'])
        return cls(**data)


def _stats_tensor(stats: NormStats | None, key: str, dim: int, default: float) -> torch.Tensor:
    if stats is None:
        return torch.full((dim,), default)
    values = torch.tensor(getattr(stats, key), dtype=torch.float32)
    if values.shape != (dim,):
        raise ValueError(f'normalization {key} has {values.shape[0]} values, expected {dim}')
    return values


class ObsEncoder(nn.Module):
    """Images (uint8 [B, T, H, W, 3] per camera) + normalized state [B, T, D] →
    context [B, d] and tokens [B, T·(cameras+1), d]."""

    def __init__(self, arch: PolicyArch) -> None:
        super().__init__()
        m = arch.model
        d = m.d_model
        featured = [c for c in arch.cameras if c.name != m.object_readout]
        self.camera_names = [c.name for c in featured]
        self.cameras = nn.ModuleDict({c.name: CameraEncoder(c.height, c.width, m.channels,
                                                            m.keypoints, d)
                                      for c in featured})
        # with an object readout the state also carries its estimate of sim_objects
        state_dim = arch.state_dim + (arch.auxiliary_dim if m.object_readout else 0)
        self.state = (MLP(state_dim, m.state_hidden, d, 2) if state_dim else None)
        per_step = len(featured) + (1 if self.state is not None else 0)
        self.n_tokens = per_step * arch.history
        self.position = nn.Parameter(torch.randn(1, self.n_tokens, d) * 0.02)
        self.fuse = nn.Sequential(nn.Linear(self.n_tokens * d, d), nn.GELU(),
                                  nn.Linear(d, d), nn.LayerNorm(d))
        # on the observation features every head reads (context and tokens)
        self.drop = nn.Dropout(m.dropout) if m.dropout else nn.Identity()
        self.augment_shift = 0
        self.state_noise = 0.0

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = []
        for name in self.camera_names:
            x = images[name]
            b, t = x.shape[0], x.shape[1]
            x = x.reshape(b * t, x.shape[2], x.shape[3], 3).permute(0, 3, 1, 2).float()
            x = x * (2.0 / 255.0) - 1.0
            if self.training and self.augment_shift:
                x = random_shift(x, self.augment_shift)
            tokens.append(self.cameras[name](x).reshape(b, t, -1))
        if self.state is not None:
            if self.training and self.state_noise:
                state = state + self.state_noise * torch.randn_like(state)
            tokens.append(self.state(state))
        seq = torch.stack(tokens, 2).reshape(tokens[0].shape[0], self.n_tokens, -1)
        seq = self.drop(seq + self.position)
        return self.drop(self.fuse(seq.reshape(seq.shape[0], -1))), seq


# The table positions (objects_on_table: cube x, y, z, goal x, y) an object readout predicts:
# all but the cube's height, which is the table's.
READOUT_COLUMNS = [0, 1, 3, 4]


class BCPolicy(nn.Module):
    """Encoder + head + normalization (see module docstring)."""

    def __init__(self, arch: PolicyArch, stats: dict[str, NormStats]) -> None:
        super().__init__()
        self.arch = arch
        a, s = arch.action_dim, arch.state_dim
        self.register_buffer('action_mean', _stats_tensor(stats.get('action'), 'mean', a, 0.0))
        self.register_buffer('action_std', _stats_tensor(stats.get('action'), 'std', a, 1.0))
        self.register_buffer('state_mean', _stats_tensor(stats.get('state'), 'mean', s, 0.0))
        self.register_buffer('state_std', _stats_tensor(stats.get('state'), 'std', s, 1.0))
        seen = torch.ones(s)
        for key in arch.model.frame_only_keys:
            seen[state_slice(arch.state_keys, key)] = 0.0
        # Not persistent: it follows from the architecture, and checkpoints stay as they were.
        self.register_buffer('state_seen', seen, persistent=False)
        self.frame = arch.action_frame
        self.encoder = ObsEncoder(arch)
        # Not in the exported graph: sample() never reads it.
        self.auxiliary = None
        if arch.auxiliary_dim:
            x = arch.auxiliary_dim
            self.register_buffer('auxiliary_mean',
                                 _stats_tensor(stats.get('auxiliary'), 'mean', x, 0.0))
            self.register_buffer('auxiliary_std',
                                 _stats_tensor(stats.get('auxiliary'), 'std', x, 1.0))
            if not arch.model.object_readout:
                self.auxiliary = MLP(arch.model.d_model, arch.model.d_model, x, 2)
        self.readout = None
        self.readout_samples = 0  # train.readout_samples (batches come shuffled)
        if arch.model.object_readout:
            camera = next(c for c in arch.cameras if c.name == arch.model.object_readout)
            self.readout = ObjectReadout(camera.height, camera.width, objects=2)
            # cube x, y, z and goal x, y on the table (READOUT_COLUMNS: what it predicts)
            self.register_buffer('objects_mean', _stats_tensor(stats.get('objects'), 'mean', 5,
                                                               0.0))
            self.register_buffer('objects_std', _stats_tensor(stats.get('objects'), 'std', 5,
                                                              1.0))
        head_cls = HEADS[arch.head]
        options = dict(arch.model.head_options)
        d, h = arch.model.d_model, arch.chunk_length
        if head_cls is DiscreteHead:
            low = (_stats_tensor(stats.get('action'), 'low', a, -2.0) - self.action_mean) \
                / self.action_std if stats.get('action') and stats['action'].low else None
            high = (_stats_tensor(stats.get('action'), 'high', a, 2.0) - self.action_mean) \
                / self.action_std if stats.get('action') and stats['action'].high else None
            self.head = head_cls(d, h, a, options, low=low, high=high)
        else:
            self.head = head_cls(d, h, a, options)

    @property
    def stochastic(self) -> bool:
        return bool(self.head.stochastic)

    @property
    def accepts_prefix(self) -> bool:
        return bool(self.head.accepts_prefix)

    def normalize_actions(self, actions: torch.Tensor, state: torch.Tensor | None
                          ) -> torch.Tensor:
        latest = state[:, -1] if state is not None else None
        return (self.frame.to_model(actions, latest) - self.action_mean) / self.action_std

    def encode(self, images: dict[str, torch.Tensor], state: torch.Tensor | None,
               objects: torch.Tensor | None = None):
        """With an object readout the state also carries `objects` (the recorded sim_objects,
        raw [B, 5], while training) or, when None, the readout's estimate from the images."""
        state_n = (state - self.state_mean) / self.state_std * self.state_seen \
            if state is not None and self.encoder.state is not None else None
        if self.readout is not None:
            if objects is None:
                objects = self.read_objects(images, state)
            objects_n = (objects - self.auxiliary_mean) / self.auxiliary_std
            state_n = torch.cat([state_n, objects_n[:, None]], -1)
        return self.encoder(images, state_n)

    def _readout_table(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """The readout camera's latest frame → cube x, y and goal x, y, normalized [B, 4]."""
        x = images[self.arch.model.object_readout][:, -1].permute(0, 3, 1, 2).float()
        return self.readout(x * (2.0 / 255.0) - 1.0)

    def read_objects(self, images: dict[str, torch.Tensor], state: torch.Tensor
                     ) -> torch.Tensor:
        """The readout's estimate of the sim_objects state, raw units [B, 5]."""
        xy = (self._readout_table(images) * self.objects_std[READOUT_COLUMNS]
              + self.objects_mean[READOUT_COLUMNS])
        height = self.objects_mean[2:3].expand(xy.shape[0], 1)
        tcp = state[:, -1, self.arch.readout_anchor]
        return objects_from_table(torch.cat([xy[:, :2], height, xy[:, 2:]], -1), tcp)

    def _readout_loss(self, images: dict[str, torch.Tensor], state: torch.Tensor,
                      objects: torch.Tensor) -> torch.Tensor:
        """Per sample: the readout against the recorded table positions (Huber, normalized:
        frames where the paddle hides the cube are not worth chasing as squares)."""
        table = objects_on_table(objects, state[:, -1, self.arch.readout_anchor])
        target = ((table - self.objects_mean) / self.objects_std)[:, READOUT_COLUMNS]
        return F.smooth_l1_loss(self._readout_table(images), target, beta=0.05,
                                reduction='none').mean(-1)

    @torch.no_grad()
    def initialize(self, batch: Batch) -> None:
        """Data-dependent head initialisation from the first training batch (GMM seeds its
        components on training chunks); a no-op for the other heads."""
        ctx, _tokens = self.encode(batch.images, batch.state,
                                   batch.auxiliary if self.readout is not None else None)
        self.head.initialize(ctx, self.normalize_actions(batch.actions, batch.state))

    def loss(self, batch: Batch) -> torch.Tensor:
        """Weighted mean of per-sample losses (sample weights = HG-DAgger weighting)."""
        return self(batch.images, batch.state, batch.actions, batch.valid, batch.weight,
                    batch.auxiliary)

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor,
                actions: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor,
                auxiliary: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss (forward is what DistributedDataParallel synchronises): the
        head's, plus the auxiliary regression or the object readout's when the architecture
        has one."""
        if self.arch.auxiliary_dim and (auxiliary is None or
                                        auxiliary.shape[-1] != self.arch.auxiliary_dim):
            raise ValueError(f'this policy learns to predict {list(self.arch.auxiliary_keys)}'
                             f' ({self.arch.auxiliary_dim} values); the batch has '
                             f'{None if auxiliary is None else auxiliary.shape[-1]}')
        ctx, tokens = self.encode(images, state, auxiliary if self.readout is not None else None)
        target = self.normalize_actions(actions, state)
        mask = torch.where(valid, torch.ones_like(weight[:, None]),
                           torch.full_like(weight[:, None], self.arch.padding_weight))
        per_sample = self.head.loss(ctx, tokens, target, mask)
        if self.auxiliary is not None:
            error = self.auxiliary(ctx) - (auxiliary - self.auxiliary_mean) / self.auxiliary_std
            per_sample = per_sample + self.arch.auxiliary_weight * error.square().mean(-1)
        loss = (per_sample * weight).sum() / weight.sum().clamp_min(1e-6)
        if self.readout is not None:  # perception: every sample counts alike
            n = self.readout_samples or state.shape[0]
            loss = loss + self.arch.auxiliary_weight * self._readout_loss(
                {k: v[:n] for k, v in images.items()}, state[:n], auxiliary[:n]).mean()
        return loss

    @torch.no_grad()
    def predict_auxiliary(self, images: dict[str, torch.Tensor], state: torch.Tensor | None
                          ) -> torch.Tensor:
        """The auxiliary keys' values [B, D_aux] in raw units, as the encoder reads them."""
        if self.readout is not None:
            return self.read_objects(images, state)
        if self.auxiliary is None:
            raise ValueError('this policy has no auxiliary keys (data.auxiliary_keys)')
        ctx, _tokens = self.encode(images, state)
        return self.auxiliary(ctx) * self.auxiliary_std + self.auxiliary_mean

    def sample(self, images: dict[str, torch.Tensor], state: torch.Tensor | None,
               noise: torch.Tensor | None = None, prefix: torch.Tensor | None = None,
               prefix_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Raw-unit action chunks [B, H, A]; stochastic heads draw from `noise` (standard
        normal [B, H, A]; drawn here when None)."""
        ctx, tokens = self.encode(images, state)
        b = ctx.shape[0]
        if noise is None and self.stochastic:
            noise = torch.randn(b, self.arch.chunk_length, self.arch.action_dim,
                                device=ctx.device)
        prefix_n = self.normalize_actions(prefix, state) if prefix is not None else None
        if prefix_n is not None and noise is None:
            noise = torch.zeros_like(prefix_n)
        out = self.head.sample(ctx, tokens, noise, prefix_n, prefix_weights)
        out = out * self.action_std + self.action_mean
        return self.frame.from_model(out, state[:, -1] if state is not None else None)


class ExportModule(nn.Module):
    """The ONNX entry point: positional inputs in the order of `input_names()`."""

    def __init__(self, policy: BCPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.cameras = [c.name for c in policy.arch.cameras]
        self.has_state = policy.arch.state_dim > 0

    def input_names(self) -> list[str]:
        names = [f'image.{c}' for c in self.cameras]
        if self.has_state:
            names.append('state')
        if self.policy.accepts_prefix:
            names += ['prefix', 'prefix_weights']
        if self.policy.stochastic:
            names.append('noise')
        return names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names(), inputs))
        images = {c: named[f'image.{c}'] for c in self.cameras}
        return self.policy.sample(images, named.get('state'), named.get('noise'),
                                  named.get('prefix'), named.get('prefix_weights'))
