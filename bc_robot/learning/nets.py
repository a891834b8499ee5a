"""Network building blocks shared by every head: a small ResNet-style CNN per camera (no
torchvision), spatial-softmax keypoints, a state MLP, and pre-norm transformer blocks
written with plain matmul/softmax so that the legacy ONNX exporter turns them into
standard opset-17 operators (no fused attention kernels to trip over).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """conv-GN-ReLU-conv-GN + (projected) skip, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(_groups(c_out), c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Feature map → K keypoints (expected x, y of a softmax over the map), the encoding
    visuomotor policies use because it keeps *where* things are. `log_scale`: a learned
    sharpness of the softmax, starting there (None: none)."""

    def __init__(self, channels: int, height: int, width: int, keypoints: int,
                 log_scale: float | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, keypoints, 1)
        self.log_scale = (None if log_scale is None else
                          nn.Parameter(torch.tensor(float(log_scale))))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                indexing='ij')
        self.register_buffer('grid', torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1),
                             persistent=False)  # [HW, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        logits = self.conv(x).flatten(2)
        if self.log_scale is not None:
            logits = logits * self.log_scale.exp()
        attention = torch.softmax(logits, dim=-1)  # [N, K, HW]
        return (attention @ self.grid).reshape(n, -1)               # [N, 2K]


class CameraEncoder(nn.Module):
    """RGB in [-1, 1] (N, 3, H, W) → feature vector (N, out_dim)."""

    def __init__(self, height: int, width: int, channels: Sequence[int], keypoints: int,
                 out_dim: int) -> None:
        super().__init__()
        c0 = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, 2, 1, bias=False),
                                  nn.GroupNorm(_groups(c0), c0), nn.ReLU())
        blocks, c_in = [], c0
        for i, c in enumerate(channels):
            blocks.append(ResBlock(c_in, c, 1 if i == 0 else 2))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():
            shape = self.blocks(self.stem(torch.zeros(1, 3, height, width))).shape
        self.pool = SpatialSoftmax(c_in, shape[2], shape[3], keypoints)
        self.out = nn.Sequential(nn.Linear(2 * keypoints, out_dim), nn.LayerNorm(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.blocks(self.stem(x))))


class ObjectReadout(nn.Module):
    """RGB in [-1, 1] (N, 3, H, W) → each object's table x, y (N, 2·objects, normalized): a
    two-layer 3×3 detector, one spatial-softmax keypoint per object, and a small network per
    object from its keypoint to the table. The keypoint moves with the object in the image,
    so a layout never trained on is read as well as one that was. The softmax starts sharp
    (logits ×100): a diffuse one averages the whole table and never settles on a small cube."""

    def __init__(self, height: int, width: int, objects: int, channels: int = 16,
                 hidden: int = 64) -> None:
        super().__init__()
        self.detector = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1), nn.ReLU(),
                                      nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU())
        self.keypoints = SpatialSoftmax(channels, height, width, objects,
                                        log_scale=math.log(100.0))
        self.maps = nn.ModuleList(nn.Sequential(nn.Linear(2, hidden), nn.Tanh(),
                                                nn.Linear(hidden, hidden), nn.Tanh(),
                                                nn.Linear(hidden, 2)) for _ in range(objects))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        points = self.keypoints(self.detector(x))  # [N, 2·objects]: x, y per object
        return torch.cat([m(points[:, 2 * i:2 * i + 2]) for i, m in enumerate(self.maps)], -1)


def random_shift(x: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-style augmentation: replicate-pad by `pad` pixels and crop back at a random
    integer offset per image (N, C, H, W)."""
    n, _c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode='replicate')
    ys = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    xs = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = (ys[:, None] + torch.arange(h, device=x.device)[None])  # [N, H]
    cols = (xs[:, None] + torch.arange(w, device=x.device)[None])  # [N, W]
    index = rows[:, None, :, None] * (w + 2 * pad) + cols[:, None, None, :]  # [N,1,H,W]
    flat = padded.flatten(2)
    return torch.gather(flat, 2, index.flatten(2).expand(-1, x.shape[1], -1)).reshape(x.shape)


class MLP(nn.Sequential):
    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int = 2,
                 dropout: float = 0.0) -> None:
        modules: list[nn.Module] = []
        d = d_in
        for _ in range(layers - 1):
            modules += [nn.Linear(d, hidden), nn.GELU()]
            if dropout:
                modules.append(nn.Dropout(dropout))
            d = hidden
        modules.append(nn.Linear(d, d_out))
        super().__init__(*modules)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f'attention width {d} is not a multiple of {heads} heads')
        self.heads, self.d_head = heads, d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        m = memory.shape[1]
        q = self.q(x).reshape(b, n, self.heads, self.d_head).transpose(1, 2)
        k, v = self.kv(memory).reshape(b, m, 2, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head)), -1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, d: int, heads: int, cross: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.cross = Attention(d, heads) if cross else None
        self.norm_c = nn.LayerNorm(d) if cross else None
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, 2 * d, d, 2)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h))
        if self.cross is not None and memory is not None:
            x = x + self.drop(self.cross(self.norm_c(x), memory))
        return x + self.drop(self.mlp(self.norm2(x)))


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """Sinusoidal embedding of a float timestep tensor [B] → [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32,
                                                        device=t.device) / half)
    angles = (t.float() * scale)[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
