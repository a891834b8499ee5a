"""Chunked action heads on the shared observation context, all in normalized action space.

Every head implements
  loss(ctx, tokens, target, mask) → per-sample loss [B]
      target [B, H, A] normalized; mask [B, H] per-step loss weight (padding weight past
      the episode end, 1 elsewhere)
  sample(ctx, tokens, noise, prefix, prefix_w) → [B, H, A] normalized
      noise [B, H, A] standard normal (stochastic heads: all randomness comes from it so the
      ONNX graph is a pure function and parity with torch is exact); prefix/prefix_w only
      for heads with `accepts_prefix` (flow, diffusion: real-time chunking).

Sampler settings (steps, temperature, ...) live in `self.sampler` and are baked into the
exported graph; policy.json records them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bc_robot.learning.nets import MLP, Block, timestep_embedding

SQRT2 = math.sqrt(2.0)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / SQRT2))


def _masked_mean(per_elem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """per_elem [B, H, A], mask [B, H] → [B] mean over the weighted elements."""
    w = mask[:, :, None].expand_as(per_elem)
    return (per_elem * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1e-6)


class Head(nn.Module):
    stochastic = False
    accepts_prefix = False
    default_sampler: dict[str, Any] = {}

    def __init__(self, d: int, horizon: int, action_dim: int, options: dict[str, Any]) -> None:
        super().__init__()
        self.d, self.horizon, self.action_dim = d, horizon, action_dim
        self.check_options(options)
        merged = {**self.default_options(), **{k: v for k, v in options.items()
                                               if k in self.default_options()}}
        self.options = merged
        self.sampler = {**self.default_sampler, **{k: v for k, v in options.items()
                                                   if k in self.default_sampler}}

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        known = set(cls.default_options()) | set(cls.default_sampler)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f'{cls.__name__}: unknown model.head_options {unknown}; known: '
                             f'{sorted(known)}')

    def initialize(self, ctx: torch.Tensor, target: torch.Tensor) -> None:
        """Data-dependent initialisation from a first training batch (default: none)."""

    def set_sampler(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(self.default_sampler))
        if unknown:
            raise ValueError(f'{type(self).__name__} has no sampler setting(s) {unknown}; '
                             f'known: {sorted(self.default_sampler)}')
        self.sampler.update(settings)


class MSEHead(Head):
    """Deterministic regression of the whole chunk: averages the modes of multimodal data."""

    @classmethod
    def default_options(cls):
        return {'hidden': 512}

    def __init__(self, d, horizon, action_dim, options):
        super().__init__(d, horizon, action_dim, options)
        self.net = MLP(d, self.options['hidden'], horizon * action_dim, 3)

    def loss(self, ctx, tokens, target, mask):
        pred = self.net(ctx).reshape(target.shape)
        return _masked_mean((pred - target) ** 2, mask)

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        return self.net(ctx).reshape(-1, self.horizon, self.action_dim)


class GMMHead(Head):
    """Mixture of K diagonal Gaussians over the whole chunk. Sampling picks a component
    with a uniform derived from the noise input; the output is that component's mean plus
    `std_scale` × its std × noise (0 = the component mean, a smooth chunk).

    Component stds live in [min_std, max_std] (normalized units). Uncapped, one component
    with std ≈ the data's spread covers both modes, and that symmetric solution is only
    marginally unstable (the split grows ∝ spread²/std² − 1 ≈ 0), so gradient descent
    sits on it; with max_std well below the normalized spread of 1 it splits quickly."""

    stochastic = True
    default_sampler = {'std_scale': 0.0}

    @classmethod
    def default_options(cls):
        return {'modes': 5, 'hidden': 512, 'min_std': 0.01, 'max_std': 0.5}

    def __init__(self, d, horizon, action_dim, options):
        super().__init__(d, horizon, action_dim, options)
        self.k = int(self.options['modes'])
        n = horizon * action_dim
        self.trunk = MLP(d, self.options['hidden'], self.options['hidden'], 2)
        self.logits = nn.Linear(self.options['hidden'], self.k)
        # mean_k = shared base + small per-component offset. Independent means collapse:
        # the component that starts closest wins every sample, its rivals never receive
        # gradient; with a shared base every component tracks the data and the offsets
        # only have to separate the modes.
        self.base = nn.Linear(self.options['hidden'], n)
        self.offsets = nn.Linear(self.options['hidden'], self.k * n)
        with torch.no_grad():
            self.offsets.weight.mul_(0.1)
            self.offsets.bias.normal_(0.0, 0.05)
        self.stds = nn.Linear(self.options['hidden'], self.k * n)

    @torch.no_grad()
    def initialize(self, ctx, target):
        """Start each component at a different training chunk (relative to the shared
        base), like k-means++ seeding: a component that starts far from every mode never
        wins a sample, never gets gradient, and the mixture collapses onto one Gaussian."""
        h = F.gelu(self.trunk(ctx))
        x = target.reshape(target.shape[0], -1)
        pick = torch.randperm(x.shape[0], device=x.device)[:self.k]
        pick = pick[torch.arange(self.k, device=x.device) % pick.shape[0]]
        k = torch.arange(self.k, device=x.device)
        means = self.base(h[pick])[:, None] + self.offsets(h[pick]).reshape(self.k, self.k, -1)
        error = x[pick] - means[k, k]          # component k vs its seed chunk
        self.offsets.bias.add_(error.reshape(-1))

    def _params(self, ctx):
        h = F.gelu(self.trunk(ctx))
        n = self.horizon * self.action_dim
        means = self.base(h)[:, None] + self.offsets(h).reshape(-1, self.k, n)
        low, high = self.options['min_std'], self.options['max_std']
        stds = low + (high - low) * torch.sigmoid(self.stds(h).reshape(-1, self.k, n))
        return torch.log_softmax(self.logits(h), -1), means, stds

    def loss(self, ctx, tokens, target, mask):
        log_pi, means, stds = self._params(ctx)
        x = target.reshape(target.shape[0], 1, -1)
        w = mask[:, :, None].expand_as(target).reshape(target.shape[0], 1, -1)
        log_prob = (-0.5 * ((x - means) / stds) ** 2 - torch.log(stds)
                    - 0.5 * math.log(2 * math.pi)) * w
        nll = -torch.logsumexp(log_pi + log_prob.sum(-1), dim=-1)
        return nll / w.sum((1, 2)).clamp_min(1.0)

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        log_pi, means, stds = self._params(ctx)
        flat = noise.reshape(noise.shape[0], -1)
        u = _normal_cdf(flat.sum(-1, keepdim=True) / math.sqrt(flat.shape[1]))  # [B, 1]
        cdf = torch.cumsum(torch.exp(log_pi), -1)
        index = (cdf < u).sum(-1, keepdim=True).clamp(max=self.k - 1)              # [B, 1]
        onehot = (torch.arange(self.k, device=ctx.device)[None] == index).to(means.dtype)
        mean = (onehot[:, :, None] * means).sum(1)
        std = (onehot[:, :, None] * stds).sum(1)
        out = mean + float(self.sampler['std_scale']) * std * flat
        return out.reshape(-1, self.horizon, self.action_dim)


class DiscreteHead(Head):
    """256 bins per action dimension between the 1st and 99th percentile, predicted
    autoregressively over the H×A tokens of the chunk (time-major) by a GRU conditioned on
    the context. Token k is sampled by inverse CDF with u = Φ(noise_k)."""

    stochastic = True
    default_sampler = {'temperature': 1.0}

    @classmethod
    def default_options(cls):
        return {'bins': 256, 'hidden': 128, 'smoothing_bins': 1.0}

    def __init__(self, d, horizon, action_dim, options, low=None, high=None):
        super().__init__(d, horizon, action_dim, options)
        self.bins = int(self.options['bins'])
        self.n = horizon * action_dim
        hidden = int(self.options['hidden'])
        low = torch.full((action_dim,), -2.0) if low is None else torch.as_tensor(low).float()
        high = torch.full((action_dim,), 2.0) if high is None else torch.as_tensor(high).float()
        self.register_buffer('low', low.repeat(horizon))    # [n] normalized units
        self.register_buffer('high', high.repeat(horizon))
        # Inputs per token: the previous token's value and the same dimension's value one
        # control step earlier (chunks are smooth: the most informative token, which the
        # GRU then need not carry across A steps), as Fourier features of the bin position
        # so that "stay near the previous value" is one smooth function rather than 256
        # separately learned embeddings; plus a flag for "no such token yet".
        self.register_buffer('frequencies', torch.arange(1, 9).float() * math.pi,
                             persistent=False)
        self.value_in = nn.Linear(2 * (1 + 2 * 8 + 1), hidden)
        self.position = nn.Parameter(torch.randn(self.n, hidden) * 0.02)
        self.context = nn.Linear(d, hidden)
        self.init_h = nn.Linear(d, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, self.bins)

    def _to_bins(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x - self.low) / (self.high - self.low) * self.bins
        return scaled.floor().clamp(0, self.bins - 1).long()

    def _features(self, index: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Bin index (any shape) → [..., 18] Fourier features (zeros + flag when absent)."""
        x = (index.float() + 0.5) * (2.0 / self.bins) - 1.0
        angles = x[..., None] * self.frequencies
        features = torch.cat([x[..., None], torch.sin(angles), torch.cos(angles)], -1)
        present = present.float()[..., None]
        return torch.cat([features * present, 1.0 - present], -1)

    def _centers(self, index: torch.Tensor, k: int | slice) -> torch.Tensor:
        low, high = self.low[k], self.high[k]
        return low + (index.to(low.dtype) + 0.5) * (high - low) / self.bins

    def loss(self, ctx, tokens, target, mask):
        b = target.shape[0]
        bins = self._to_bins(target.reshape(b, -1))                     # [B, n]
        a = self.action_dim
        zeros = torch.zeros((b, a), dtype=torch.long, device=ctx.device)
        k = torch.arange(self.n, device=ctx.device)[None].expand(b, -1)
        previous = self._features(torch.cat([zeros[:, :1], bins[:, :-1]], 1), k >= 1)
        previous_step = self._features(torch.cat([zeros, bins[:, :-a]], 1), k >= a)
        inputs = self.value_in(torch.cat([previous, previous_step], -1)) \
            + self.position[None] + self.context(ctx)[:, None]
        h0 = torch.tanh(self.init_h(ctx))[None]
        hidden, _ = self.gru(inputs, h0)
        log_probs = torch.log_softmax(self.out(hidden), -1)              # [B, n, bins]
        sigma = float(self.options['smoothing_bins'])
        if sigma > 0:
            grid = torch.arange(self.bins, device=ctx.device, dtype=log_probs.dtype)
            soft = torch.exp(-0.5 * ((grid[None, None] - bins[..., None]) / sigma) ** 2)
            soft = soft / soft.sum(-1, keepdim=True)
            nll = -(soft * log_probs).sum(-1)
        else:
            nll = -log_probs.gather(-1, bins[..., None])[..., 0]
        w = mask[:, :, None].expand(b, self.horizon, self.action_dim).reshape(b, -1)
        return (nll * w).sum(1) / w.sum(1).clamp_min(1e-6)

    def _cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step with the trained nn.GRU weights (export-friendly ops)."""
        gi = x @ self.gru.weight_ih_l0.t() + self.gru.bias_ih_l0
        gh = h @ self.gru.weight_hh_l0.t() + self.gru.bias_hh_l0
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        b = ctx.shape[0]
        flat = noise.reshape(b, -1)
        temperature = float(self.sampler['temperature'])
        context = self.context(ctx)
        h = torch.tanh(self.init_h(ctx))
        zero = torch.zeros((b,), dtype=torch.long, device=ctx.device)
        yes = torch.ones((b,), dtype=torch.bool, device=ctx.device)
        token, tokens, values = zero, [], []
        a = self.action_dim
        for k in range(self.n):
            previous = self._features(token, yes if k >= 1 else ~yes)
            previous_step = self._features(tokens[k - a] if k >= a else zero,
                                           yes if k >= a else ~yes)
            h = self._cell(self.value_in(torch.cat([previous, previous_step], -1))
                           + self.position[k] + context, h)
            logits = self.out(h)
            if temperature <= 0:
                token = logits.argmax(-1)
            else:
                cdf = torch.cumsum(torch.softmax(logits / temperature, -1), -1)
                u = _normal_cdf(flat[:, k:k + 1])
                token = (cdf < u).sum(-1).clamp(max=self.bins - 1)
            tokens.append(token)
            values.append(self._centers(token, k))
        return torch.stack(values, 1).reshape(b, self.horizon, self.action_dim)


class ACTHead(Head):
    """ACT: a conditional VAE whose decoder is a transformer (H learned queries
    cross-attending to the observation tokens and the latent). The posterior encoder sees
    the ground-truth chunk during training only; at test time z = 0 (`z_scale` 0), or
    z = z_scale × noise for prior samples."""

    default_sampler = {'z_scale': 0.0}

    @classmethod
    def default_options(cls):
        return {'latent': 16, 'layers': 2, 'encoder_layers': 2, 'heads': 4,
                'kl_weight': 0.01}

    def __init__(self, d, horizon, action_dim, options):
        super().__init__(d, horizon, action_dim, options)
        if self.sampler['z_scale']:
            self.stochastic = True
        heads, latent = int(self.options['heads']), int(self.options['latent'])
        if latent > horizon * action_dim:
            raise ValueError(f'act latent {latent} must be ≤ chunk_length × action_dim '
                             f'({horizon * action_dim}): z comes from the noise input')
        self.latent = latent
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.action_in = nn.Linear(action_dim, d)
        self.enc_position = nn.Parameter(torch.randn(1, horizon + 2, d) * 0.02)
        self.encoder = nn.ModuleList(Block(d, heads) for _ in range(self.options['encoder_layers']))
        self.to_latent = nn.Linear(d, 2 * latent)
        self.from_latent = nn.Linear(latent, d)
        self.queries = nn.Parameter(torch.randn(1, horizon, d) * 0.02)
        self.decoder = nn.ModuleList(Block(d, heads, cross=True)
                                     for _ in range(self.options['layers']))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, action_dim)

    def set_sampler(self, **settings):
        super().set_sampler(**settings)
        self.stochastic = bool(self.sampler['z_scale'])

    def _decode(self, ctx, tokens, z):
        memory = torch.cat([self.from_latent(z)[:, None], ctx[:, None], tokens], 1)
        x = self.queries.expand(ctx.shape[0], -1, -1)
        for block in self.decoder:
            x = block(x, memory)
        return self.out(self.norm(x))

    def loss(self, ctx, tokens, target, mask):
        b = target.shape[0]
        seq = torch.cat([self.cls.expand(b, -1, -1), ctx[:, None], self.action_in(target)], 1)
        seq = seq + self.enc_position
        for block in self.encoder:
            seq = block(seq)
        mu, logvar = self.to_latent(seq[:, 0]).chunk(2, -1)
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        pred = self._decode(ctx, tokens, z)
        recon = _masked_mean((pred - target).abs(), mask)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
        return recon + float(self.options['kl_weight']) * kl

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        scale = float(self.sampler['z_scale'])
        if scale and noise is not None:
            z = scale * noise.reshape(ctx.shape[0], -1)[:, :self.latent]
        else:
            z = torch.zeros(ctx.shape[0], self.latent, device=ctx.device, dtype=ctx.dtype)
        return self._decode(ctx, tokens, z)


class Denoiser(nn.Module):
    """Transformer over the H action tokens with the context and the time as two extra
    tokens. Each action token also sees the RTC prefix and its weight, so the same network
    continues a committed prefix when the policy node passes one."""

    def __init__(self, d, horizon, action_dim, layers, heads):
        super().__init__()
        self.action_in = nn.Linear(2 * action_dim + 1, d)
        self.position = nn.Parameter(torch.randn(1, horizon + 2, d) * 0.02)
        self.context = nn.Linear(d, d)
        self.time = MLP(d, d, d, 2)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, action_dim)
        self.d = d

    def forward(self, x, t, ctx, prefix, prefix_w, time_scale):
        w = prefix_w[:, :, None]
        tokens = self.action_in(torch.cat([x, prefix * w, w], -1))
        cond = torch.stack([self.context(ctx), self.time(timestep_embedding(t, self.d,
                                                                            time_scale))], 1)
        seq = torch.cat([cond, tokens], 1) + self.position
        for block in self.blocks:
            seq = block(seq)
        return self.out(self.norm(seq[:, 2:]))


def random_prefix(target: torch.Tensor, probability: float, noise_std: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time RTC conditioning: for a random half of the samples, a committed prefix
    of d ~ U{1..H-1} steps (weight 1) followed by an exponentially decaying soft region of
    s ~ U{0..H-d} steps, as the policy node's rtc executor passes it; the prefix values are
    the ground truth plus a little noise (at run time they come from the previous chunk)."""
    b, h, _a = target.shape
    device = target.device
    steps = torch.arange(h, device=device)[None].float()
    d = torch.randint(1, max(2, h), (b, 1), device=device).float()
    s = (torch.rand(b, 1, device=device) * (h - d + 1)).floor()
    c = ((d + s - steps) / (s + 1)).clamp(0, 1)
    soft = c * (torch.exp(c) - 1) / (math.e - 1)
    weights = torch.where(steps < d, torch.ones_like(soft), soft)
    weights = weights * (torch.rand(b, 1, device=device) < probability).float()
    prefix = target + noise_std * torch.randn_like(target)
    return prefix, weights


class FlowHead(Head):
    """Flow matching (rectified flow): x_t = (1-t)·noise + t·x, the network predicts
    x - noise; sampling integrates `steps` Euler steps from the noise input at t = 0."""

    stochastic = True
    accepts_prefix = True
    default_sampler = {'steps': 10}

    @classmethod
    def default_options(cls):
        return {'layers': 3, 'heads': 4, 'prefix_probability': 0.5, 'prefix_noise': 0.02}

    def __init__(self, d, horizon, action_dim, options):
        super().__init__(d, horizon, action_dim, options)
        self.net = Denoiser(d, horizon, action_dim, int(self.options['layers']),
                            int(self.options['heads']))

    def loss(self, ctx, tokens, target, mask):
        prefix, prefix_w = random_prefix(target, self.options['prefix_probability'],
                                         self.options['prefix_noise'])
        noise = torch.randn_like(target)
        t = torch.rand(target.shape[0], device=target.device)
        x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * target
        pred = self.net(x_t, t, ctx, prefix, prefix_w, 1000.0)
        return _masked_mean((pred - (target - noise)) ** 2, mask)

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        b = ctx.shape[0]
        if prefix is None:
            prefix = torch.zeros_like(noise)
            prefix_w = torch.zeros(b, self.horizon, device=ctx.device, dtype=ctx.dtype)
        steps = int(self.sampler['steps'])
        x = noise
        for i in range(steps):
            t = torch.full((b,), i / steps, device=ctx.device, dtype=ctx.dtype)
            x = x + self.net(x, t, ctx, prefix, prefix_w, 1000.0) / steps
        return x


class DiffusionHead(Head):
    """DDPM training (squared-cosine schedule over `train_steps`), DDIM sampling (η = 0,
    `steps` steps) from the noise input; x0 clipped to ±`clip`. The network predicts the
    clean chunk (`prediction: sample`, default) or the noise (`epsilon`): with few sampling
    steps and z-scored actions, ε-prediction's x0 estimate at the noisiest step divides by
    √ᾱ ≈ 5e-4 and saturates the clip, which sample-prediction avoids."""

    stochastic = True
    accepts_prefix = True
    default_sampler = {'steps': 10}

    @classmethod
    def default_options(cls):
        return {'layers': 3, 'heads': 4, 'train_steps': 100, 'clip': 5.0,
                'prediction': 'sample',
                'prefix_probability': 0.5, 'prefix_noise': 0.02}

    def __init__(self, d, horizon, action_dim, options):
        super().__init__(d, horizon, action_dim, options)
        if self.options['prediction'] not in ('sample', 'epsilon'):
            raise ValueError(f"diffusion prediction {self.options['prediction']!r} must be "
                             f"'sample' or 'epsilon'")
        self.net = Denoiser(d, horizon, action_dim, int(self.options['layers']),
                            int(self.options['heads']))
        n = int(self.options['train_steps'])
        steps = torch.arange(n + 1, dtype=torch.float64) / n
        f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.register_buffer('alphas_cumprod', torch.cumprod(1 - betas, 0).float())

    def loss(self, ctx, tokens, target, mask):
        prefix, prefix_w = random_prefix(target, self.options['prefix_probability'],
                                         self.options['prefix_noise'])
        b = target.shape[0]
        t = torch.randint(0, self.alphas_cumprod.shape[0], (b,), device=target.device)
        ab = self.alphas_cumprod[t][:, None, None]
        noise = torch.randn_like(target)
        x_t = ab.sqrt() * target + (1 - ab).sqrt() * noise
        pred = self.net(x_t, t.float(), ctx, prefix, prefix_w, 1.0)
        goal = noise if self.options['prediction'] == 'epsilon' else target
        return _masked_mean((pred - goal) ** 2, mask)

    def sample(self, ctx, tokens, noise=None, prefix=None, prefix_w=None):
        b = ctx.shape[0]
        if prefix is None:
            prefix = torch.zeros_like(noise)
            prefix_w = torch.zeros(b, self.horizon, device=ctx.device, dtype=ctx.dtype)
        n = self.alphas_cumprod.shape[0]
        steps = int(self.sampler['steps'])
        times = [int(round(v)) for v in torch.linspace(n - 1, 0, steps).tolist()]
        clip = float(self.options['clip'])
        x = noise
        for i, t in enumerate(times):
            ab = self.alphas_cumprod[t]
            ab_prev = self.alphas_cumprod[times[i + 1]] if i + 1 < steps else \
                torch.ones((), device=ctx.device)
            tt = torch.full((b,), float(t), device=ctx.device, dtype=ctx.dtype)
            pred = self.net(x, tt, ctx, prefix, prefix_w, 1.0)
            if self.options['prediction'] == 'epsilon':
                pred = (x - (1 - ab).sqrt() * pred) / ab.sqrt()
            x0 = pred.clamp(-clip, clip)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x


HEADS = {'mse': MSEHead, 'gmm': GMMHead, 'discrete': DiscreteHead, 'act': ACTHead,
         'diffusion': DiffusionHead, 'flow': FlowHead}
