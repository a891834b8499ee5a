"""Checkpoint → `policy.onnx` + `policy.json`, refused unless ONNX Runtime agrees with torch.

The whole sampler is inside the graph (the flow Euler loop, the DDIM loop, the discrete
head's autoregressive loop), unrolled by the exporter, so the policy node needs nothing but
ONNX Runtime. Stochastic heads take their randomness from the `noise` input: parity feeds
torch and ONNX Runtime the same noise (and, for prefix heads, the same RTC prefix) on
held-out observations and compares in normalized action units. Nothing is written to the
model folder until parity passes.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bc_robot.core.spec import (ACTIONS_OUTPUT, NormStats, PolicySpec, TensorSpec, save_spec)
from bc_robot.learning.policy import BCPolicy, ExportModule

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-3  # max |onnx - torch| in normalized action units (std = 1)


class ExportParityError(ValueError):
    """ONNX Runtime and torch disagree beyond tolerance; nothing was written."""


@dataclass
class ExportResult:
    model_dir: Path
    spec: PolicySpec
    max_error: float          # normalized units
    samples: int
    onnx_bytes: int


def _example_inputs(module: ExportModule, observation: dict[str, np.ndarray],
                    rng: np.random.Generator, with_prefix: bool) -> dict[str, np.ndarray]:
    """One feed (batch 1) in the exported graph's input names."""
    arch = module.policy.arch
    h, a = arch.chunk_length, arch.action_dim
    feed: dict[str, np.ndarray] = {}
    for name in module.input_names():
        if name.startswith('image.'):
            feed[name] = np.ascontiguousarray(observation[name][None], dtype=np.uint8)
        elif name == 'state':
            feed[name] = np.ascontiguousarray(observation['state'][None], dtype=np.float32)
        elif name == 'noise':
            feed[name] = rng.standard_normal((1, h, a)).astype(np.float32)
        elif name == 'prefix':
            mean = module.policy.action_mean.cpu().numpy()
            std = module.policy.action_std.cpu().numpy()
            feed[name] = (mean + std * rng.standard_normal((1, h, a))).astype(np.float32)
        elif name == 'prefix_weights':
            weights = np.zeros((1, h), dtype=np.float32)
            if with_prefix:
                d = int(rng.integers(1, h)) if h > 1 else 1
                weights[0, :d] = 1.0
                weights[0, d:] = np.linspace(0.8, 0.0, h - d, dtype=np.float32)[:h - d]
            feed[name] = weights
    return feed


def _torch_run(module: ExportModule, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        device = module.policy.action_mean.device
        inputs = [torch.from_numpy(feed[n]).to(device) for n in module.input_names()]
        return module(*inputs).cpu().numpy()


def _onnx_inputs_check(model_path: Path, spec: PolicySpec) -> None:
    import onnx
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model)
    names = {'uint8': onnx.TensorProto.UINT8, 'float32': onnx.TensorProto.FLOAT}
    graph_inputs = {i.name: i for i in model.graph.input}
    expected = spec.expected_inputs()
    if set(graph_inputs) != set(expected):
        raise ValueError(f'exported graph inputs {sorted(graph_inputs)} differ from the spec '
                         f'{sorted(expected)}')
    for name, (dtype, shape) in expected.items():
        tensor = graph_inputs[name].type.tensor_type
        dims = tuple(d.dim_value for d in tensor.shape.dim)
        if tensor.elem_type != names[dtype] or dims != shape:
            raise ValueError(f'exported input {name} is elem_type {tensor.elem_type} {list(dims)}'
                             f', spec says {dtype} {list(shape)}')
    outputs = [o.name for o in model.graph.output]
    if outputs != [ACTIONS_OUTPUT]:
        raise ValueError(f'exported graph outputs {outputs}, expected [{ACTIONS_OUTPUT!r}]')


def build_spec(policy: BCPolicy, name: str, stats: dict[str, NormStats],
               provenance: dict[str, Any]) -> PolicySpec:
    arch = policy.arch
    module = ExportModule(policy)
    h, a = arch.chunk_length, arch.action_dim
    shapes = {'state': ('float32', (1, arch.history, arch.state_dim)),
              'prefix': ('float32', (1, h, a)), 'prefix_weights': ('float32', (1, h)),
              'noise': ('float32', (1, h, a))}
    for cam in arch.cameras:
        shapes[f'image.{cam.name}'] = ('uint8', (1, arch.history, cam.height, cam.width, 3))
    inputs = tuple(TensorSpec(n, *shapes[n]) for n in module.input_names())
    sampler = dict(policy.head.sampler)
    return PolicySpec(
        name=name, cameras=arch.cameras, state_keys=arch.state_keys, history=arch.history,
        action_representation=arch.action_representation, chunk_length=h,
        control_rate_hz=float(arch.control_rate_hz), head=arch.head, inputs=inputs,
        outputs=(TensorSpec(ACTIONS_OUTPUT, 'float32', (1, h, a)),),
        accepts_prefix=policy.accepts_prefix, sampler=sampler,
        normalization={k: v for k, v in stats.items() if k in ('state', 'action')},
        provenance=provenance)


def git_commit(path: Path | None = None) -> str:
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ''
    except (OSError, subprocess.SubprocessError):
        return ''


def export_policy(policy: BCPolicy, stats: dict[str, NormStats], out_dir: str | Path,
                  observations: list[dict[str, np.ndarray]], name: str | None = None,
                  provenance: dict[str, Any] | None = None,
                  tolerance: float = DEFAULT_TOLERANCE, opset: int = DEFAULT_OPSET,
                  seed: int = 0) -> ExportResult:
    """Export, check the graph against the spec, run the parity check on `observations`
    (held-out; dicts with 'image.<cam>' uint8 [T,H,W,3] and 'state' [T,D]) and only then
    write policy.onnx + policy.json into `out_dir`."""
    if opset < 17:
        raise ValueError(f'opset {opset} is below 17 (needed for LayerNormalization)')
    if not observations:
        raise ValueError('the parity check needs at least one held-out observation')
    out_dir = Path(out_dir)
    name = name or out_dir.name
    policy = policy.eval().cpu()
    module = ExportModule(policy).eval()
    spec = build_spec(policy, name, stats, provenance or {})
    rng = np.random.default_rng(seed)
    example = _example_inputs(module, observations[0], rng, with_prefix=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.export-', dir=out_dir.parent) as tmp:
        tmp_path = Path(tmp) / 'policy.onnx'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, tuple(torch.from_numpy(example[n])
                                            for n in module.input_names()),
                              str(tmp_path), input_names=module.input_names(),
                              output_names=[ACTIONS_OUTPUT], opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        _onnx_inputs_check(tmp_path, spec)
        max_error = parity_check(module, tmp_path, observations, tolerance, rng)
        spec = build_spec(policy, name, stats, {**(provenance or {}),
                                                'parity_max_error': max_error,
                                                'parity_samples': len(observations),
                                                'opset': opset})
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_path), out_dir / 'policy.onnx')
    save_spec(spec, out_dir)
    LOG.info('exported %s (%s head, parity max error %.2e over %d samples)', out_dir,
             spec.head, max_error, len(observations))
    return ExportResult(out_dir, spec, max_error, len(observations),
                        (out_dir / 'policy.onnx').stat().st_size)


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def parity_check(module: ExportModule, onnx_path: Path, observations: list[dict[str, np.ndarray]],
                 tolerance: float, rng: np.random.Generator) -> float:
    """Max normalized |ORT - torch| over the observations (same noise and prefix for both);
    ExportParityError when it exceeds `tolerance` or either side is non-finite."""
    session = ort_session(onnx_path, threads=max(1, min(2, os.cpu_count() or 1)))
    std = module.policy.action_std.cpu().numpy()
    worst = 0.0
    for i, observation in enumerate(observations):
        feed = _example_inputs(module, observation, rng, with_prefix=bool(i % 2))
        expected = _torch_run(module, feed)
        actual = session.run([ACTIONS_OUTPUT], feed)[0]
        if actual.shape != expected.shape:
            raise ExportParityError(f'ONNX output shape {list(actual.shape)} differs from torch '
                                    f'{list(expected.shape)}')
        if not (np.all(np.isfinite(actual)) and np.all(np.isfinite(expected))):
            raise ExportParityError(f'held-out sample {i}: non-finite actions (onnx finite: '
                                    f'{bool(np.all(np.isfinite(actual)))}, torch finite: '
                                    f'{bool(np.all(np.isfinite(expected)))})')
        error = np.abs(actual - expected) / std
        if float(error.max()) > tolerance:
            step, dim = np.unravel_index(int(np.argmax(error[0])), error[0].shape)
            raise ExportParityError(
                f'ONNX Runtime and torch disagree on held-out sample {i}: action step {step} '
                f'dim {dim} is {actual[0, step, dim]:.6g} vs {expected[0, step, dim]:.6g} '
                f'({float(error.max()):.3g} normalized > tolerance {tolerance:g}); nothing '
                f'was written')
        worst = max(worst, float(error.max()))
    return worst
