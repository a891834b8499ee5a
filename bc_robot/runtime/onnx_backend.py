"""ONNX Runtime backend: the default way a policy artifact runs.

Providers: a GPU provider is used only when it *actually loads*. onnxruntime-gpu lists
CUDA and TensorRT as available on any machine and silently falls back to CPU when their
libraries are missing, so the backend first checks that the provider library can be
loaded, then creates the session and reads `session.get_providers()`: what it logs is
what runs. Before the node acts, `warmup` inferences run (the first ones allocate and
are slow; they must not count as a real inference delay).

Startup refusal: the spec (policy.json) is compared with the graph — input names, dtypes
and shapes, the `actions` output and its chunk length — and with the cameras the node is
configured for. Each disagreement is a ValueError naming it, so a swapped or mis-exported
model never reaches the arm.
"""
from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from bc_robot.core.policy_settings import PROVIDER_CHOICES
from bc_robot.core.spec import (ACTIONS_OUTPUT, IMAGE_INPUT_PREFIX, NOISE_INPUT, PolicySpec,
                                load_spec)
from bc_robot.runtime.base import PolicyBackend

logger = logging.getLogger(__name__)

_ORT_TYPES = {'tensor(uint8)': 'uint8', 'tensor(float)': 'float32', 'tensor(int64)': 'int64',
              'tensor(double)': 'float64', 'tensor(float16)': 'float16',
              'tensor(int32)': 'int32'}
_PROVIDER_LIBS = {'CUDAExecutionProvider': 'libonnxruntime_providers_cuda.so',
                  'TensorrtExecutionProvider': 'libonnxruntime_providers_tensorrt.so'}


def _library_loads(provider: str) -> str | None:
    """None when the provider's shared library (and so its CUDA/TensorRT dependencies)
    loads on this machine, else the loader's reason."""
    library = _PROVIDER_LIBS.get(provider)
    if library is None:
        return None
    path = Path(ort.__file__).parent / 'capi' / library
    if not path.exists():
        return f'{library} is not part of this onnxruntime build'
    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return str(exc)
    return None


def provider_candidates(choice: str) -> list[str]:
    """Providers to try for a `providers` parameter value, best first, CPU last."""
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f'providers {choice!r} is not one of {", ".join(PROVIDER_CHOICES)}')
    wanted = {'cpu': [], 'auto': ['CUDAExecutionProvider'],
              'cuda': ['CUDAExecutionProvider'],
              'tensorrt': ['TensorrtExecutionProvider', 'CUDAExecutionProvider']}[choice]
    available = set(ort.get_available_providers())
    usable = []
    for provider in wanted:
        if provider not in available:
            logger.info('%s is not in this onnxruntime build', provider)
            continue
        problem = _library_loads(provider)
        if problem:
            logger.info('%s does not load here (%s)', provider, problem)
            continue
        usable.append(provider)
    return usable + ['CPUExecutionProvider']


def check_graph(spec: PolicySpec, session: ort.InferenceSession) -> None:
    """Raise ValueError naming the first disagreement between policy.json and the graph
    (the output first: a chunk-length mismatch also shows in the prefix input)."""
    outputs = {o.name: o for o in session.get_outputs()}
    node = outputs.get(ACTIONS_OUTPUT)
    if node is None:
        raise ValueError(f'the ONNX graph has no {ACTIONS_OUTPUT!r} output (outputs: '
                         f'{sorted(outputs)})')
    dtype = _ORT_TYPES.get(node.type, node.type)
    if dtype != 'float32':
        raise ValueError(f'output {ACTIONS_OUTPUT!r} is {dtype}, expected float32')
    if len(node.shape) == 3 and isinstance(node.shape[1], int) \
            and node.shape[1] != spec.chunk_length:
        raise ValueError(f'policy.json chunk_length is {spec.chunk_length} but the ONNX graph '
                         f'outputs {node.shape[1]} actions per chunk')
    want = (1, spec.chunk_length, spec.action_dim)
    _check_shape(f'output {ACTIONS_OUTPUT!r}', want, node.shape)
    graph = {i.name: i for i in session.get_inputs()}
    for tensor in spec.inputs:
        node = graph.get(tensor.name)
        if node is None:
            raise ValueError(f'policy.json declares input {tensor.name!r} but the ONNX graph has '
                             f'no input of that name (graph inputs: {sorted(graph)})')
        dtype = _ORT_TYPES.get(node.type, node.type)
        if dtype != tensor.dtype:
            raise ValueError(f'input {tensor.name!r}: policy.json says {tensor.dtype}, the ONNX '
                             f'graph says {dtype}')
        _check_shape(f'input {tensor.name!r}', tensor.shape, node.shape)
    extra = sorted(set(graph) - {t.name for t in spec.inputs})
    if extra:
        raise ValueError(f'the ONNX graph has inputs policy.json does not declare: {extra}')


def _check_shape(label: str, declared: Sequence[int], graph: Sequence) -> None:
    """Symbolic graph dimensions (None or a name) accept any size; fixed ones must match."""
    if len(graph) != len(declared):
        raise ValueError(f'{label}: policy.json shape {list(declared)} has {len(declared)} '
                         f'dimensions, the ONNX graph {list(graph)} has {len(graph)}')
    for axis, (want, have) in enumerate(zip(declared, graph)):
        if isinstance(have, int) and have != want:
            raise ValueError(f'{label}: policy.json shape {list(declared)} but the ONNX graph '
                             f'shape is {list(graph)} (dimension {axis})')


def check_cameras(spec: PolicySpec, configured: Sequence[str] | None) -> None:
    """The policy's cameras must all be configured on this robot/node."""
    if configured is None:
        return
    missing = [c.name for c in spec.cameras if c.name not in configured]
    if missing:
        raise ValueError(f'policy {spec.name!r} needs camera(s) {missing} that are not in the '
                         f'configured cameras {list(configured)}')


class OnnxBackend(PolicyBackend):
    """ONNX Runtime session for one policy artifact folder."""

    def __init__(self, model_dir: str | Path, providers: str = 'auto',
                 cameras: Sequence[str] | None = None, warmup: int = 3,
                 threads: int = 1, seed: int = 0, verify_hash: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.spec = load_spec(self.model_dir, verify_hash=verify_hash)
        check_cameras(self.spec, cameras)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        candidates = provider_candidates(providers)
        onnx_path = str(self.model_dir / 'policy.onnx')
        try:
            self.session = ort.InferenceSession(onnx_path, sess_options=options,
                                                providers=candidates)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f'{onnx_path} could not be loaded by ONNX Runtime: {exc}') from None
        self.provider = self.session.get_providers()[0]
        if providers != 'cpu' and self.provider == 'CPUExecutionProvider':
            logger.info('no GPU provider loaded; running %s on CPU', self.spec.name)
        logger.info('policy %s runs on %s', self.spec.name, self.provider)
        try:
            check_graph(self.spec, self.session)
        except ValueError as exc:
            raise ValueError(f'{self.model_dir}: {exc}') from None
        self._shapes = {t.name: t.shape[1:] for t in self.spec.inputs}
        self._dtypes = {t.name: np.dtype(t.dtype) for t in self.spec.inputs}
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self.warmup_s: list[float] = []
        self.warmup(warmup)

    def warmup(self, count: int) -> None:
        """Run `count` inferences on neutral inputs (mid-grey images, zero state)."""
        inputs = {}
        for tensor in self.spec.inputs:
            fill = 128 if tensor.name.startswith(IMAGE_INPUT_PREFIX) else 0
            inputs[tensor.name] = np.full(tensor.shape[1:], fill, dtype=tensor.dtype)
        for _ in range(count):
            began = time.perf_counter()
            self.infer(inputs)
            self.warmup_s.append(time.perf_counter() - began)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {}
        for name, shape in self._shapes.items():
            if name == NOISE_INPUT and name not in inputs:
                value = self._rng.standard_normal(shape).astype(np.float32)
            elif name not in inputs:
                raise ValueError(f'observation lacks {name!r} that policy {self.spec.name!r} needs')
            else:
                value = np.asarray(inputs[name])
            if value.shape != tuple(shape):
                raise ValueError(f'{name!r} has shape {list(value.shape)}, policy '
                                 f'{self.spec.name!r} needs {list(shape)}')
            feed[name] = np.ascontiguousarray(value, dtype=self._dtypes[name])[None]
        (actions,) = self.session.run([ACTIONS_OUTPUT], feed)
        return np.asarray(actions[0], dtype=np.float32)

    def reset(self) -> None:
        self._rng = np.random.default_rng(self._seed)

    def close(self) -> None:
        self.session = None


def describe_provider() -> dict[str, str]:
    """For `bc-robot doctor`: what each GPU provider would do here."""
    return {p: (_library_loads(p) or 'loads') for p in _PROVIDER_LIBS
            if p in ort.get_available_providers()} | {
        'CUDA_VISIBLE_DEVICES': os.environ.get('CUDA_VISIBLE_DEVICES', '')}
