"""Small ONNX policies built in code, implementing known functions exactly.

Until a trained model exists (and afterwards, for exact checks), tests and benches use
these: every output is a closed-form function of the inputs, so an executor's output
sequence, the prefix and soft mask handed to the model, and the arm's motion can be
predicted to the last digit. They follow the artifact contract of `bc_robot.core.spec`
exactly (same input/output names, dtypes and shapes), so the runtime cannot tell them from
an exported policy.

- `affine`: actions[i] = W[i] @ state + b[i] (state = newest history step).
- `circle`: the end effector orbits a circle in the horizontal plane at constant speed; the
  phase is read from the measured position, so the policy closes the loop like a real one.
  `lead_s` lets the plan lead the measurement by the controller's tracking lag, as a policy
  trained on commanded targets learns to.
With `accepts_prefix`, both compute out = w·prefix + (1 − w)·f(state) with w the
`prefix_weights` soft mask: the RTC contract in closed form.
Images (and `noise`) always feed the graph: the gripper column gets
`image_gain · mean(newest frames) / 255`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bc_robot.core.actions import ActionLayout
from bc_robot.core.pose import Pose
from bc_robot.core.spec import (ACTIONS_OUTPUT, IMAGE_INPUT_PREFIX, NOISE_INPUT, PREFIX_INPUT,
                                PREFIX_WEIGHTS_INPUT, STATE_INPUT, STATE_KEY_DIMS, CameraSpec,
                                PolicySpec, TensorSpec, save_spec)

OPSET = 17
_DTYPES = {'uint8': TensorProto.UINT8, 'float32': TensorProto.FLOAT,
           'int64': TensorProto.INT64, 'float64': TensorProto.DOUBLE}
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # gripper pointing straight down (x, y, z, w)


def make_spec(name: str = 'test_policy', cameras: Sequence[CameraSpec | tuple] = (),
              state_keys: Sequence[str] = ('ee_position', 'gripper'), history: int = 1,
              action_representation: str = 'ee_pose_quat_gripper', chunk_length: int = 16,
              control_rate_hz: float = 20.0, accepts_prefix: bool = False,
              noise: bool = False, head: str = 'test', **extra) -> PolicySpec:
    """A consistent PolicySpec whose inputs/outputs follow from the other settings."""
    cams = tuple(c if isinstance(c, CameraSpec) else CameraSpec(*c) for c in cameras)
    action_dim = ActionLayout(action_representation).dim
    inputs = [TensorSpec(IMAGE_INPUT_PREFIX + c.name, 'uint8', (1, history, c.height, c.width, 3))
              for c in cams]
    state_dim = sum(STATE_KEY_DIMS[k] for k in state_keys)
    if state_keys:
        inputs.append(TensorSpec(STATE_INPUT, 'float32', (1, history, state_dim)))
    if accepts_prefix:
        inputs.append(TensorSpec(PREFIX_INPUT, 'float32', (1, chunk_length, action_dim)))
        inputs.append(TensorSpec(PREFIX_WEIGHTS_INPUT, 'float32', (1, chunk_length)))
    if noise:
        inputs.append(TensorSpec(NOISE_INPUT, 'float32', (1, chunk_length, action_dim)))
    outputs = (TensorSpec(ACTIONS_OUTPUT, 'float32', (1, chunk_length, action_dim)),)
    return PolicySpec(name=name, cameras=cams, state_keys=tuple(state_keys), history=history,
                      action_representation=action_representation, chunk_length=chunk_length,
                      control_rate_hz=float(control_rate_hz), head=head, inputs=tuple(inputs),
                      outputs=outputs, accepts_prefix=accepts_prefix, **extra)


def state_offset(spec: PolicySpec, key: str) -> int:
    """Index of `key`'s first element in the state vector."""
    if key not in spec.state_keys:
        raise ValueError(f'state key {key!r} is not in the spec state_keys {list(spec.state_keys)}')
    offset = 0
    for k in spec.state_keys:
        if k == key:
            return offset
        offset += STATE_KEY_DIMS[k]
    raise AssertionError('unreachable')


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f'{base}_{self._count}'

    def const(self, value, base: str = 'c') -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self.name(base)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _newest_state(g: _Graph, name: str) -> str:
    """[1, T, D] (any dtype) → float [1, D], the newest history step."""
    state = g.op('Cast', [name], to=TensorProto.FLOAT)
    return g.op('Gather', [state, g.const(np.array(-1, dtype=np.int64))], axis=1)


def _image_term(g: _Graph, spec: PolicySpec, names: dict[str, str]) -> str | None:
    """Scalar mean of the newest frame of every camera / 255 (None without cameras)."""
    terms = []
    for cam in spec.cameras:
        image = g.op('Cast', [names[IMAGE_INPUT_PREFIX + cam.name]], to=TensorProto.FLOAT)
        newest = g.op('Gather', [image, g.const(np.array(-1, dtype=np.int64))], axis=1)
        terms.append(g.op('ReduceMean', [newest], keepdims=0))
    if not terms:
        return None
    total = terms[0] if len(terms) == 1 else g.op('Sum', terms)
    return g.op('Div', [total, g.const(np.float32(255.0 * len(terms)))])


def _finish(g: _Graph, spec: PolicySpec, names: dict[str, str], actions: str,
            image_gain: float) -> str:
    """Adds the image/noise terms and the RTC prefix blend to [1, H, A] `actions`."""
    layout = ActionLayout(spec.action_representation)
    mask = np.zeros((1, 1, layout.dim), dtype=np.float32)
    mask[..., -1] = 1.0
    image = _image_term(g, spec, names)
    if image is not None:
        gain = g.op('Mul', [image, g.const(np.float32(image_gain))])
        actions = g.op('Add', [actions, g.op('Mul', [gain, g.const(mask)])])
    if NOISE_INPUT in names:  # consumed with zero gain: deterministic
        actions = g.op('Add', [actions, g.op('Mul', [
            g.op('Cast', [names[NOISE_INPUT]], to=TensorProto.FLOAT), g.const(np.float32(0.0))])])
    if PREFIX_INPUT in names:
        weights = g.op('Cast', [names[PREFIX_WEIGHTS_INPUT]], to=TensorProto.FLOAT)
        w = g.op('Unsqueeze', [weights, g.const(np.array([2], dtype=np.int64))])
        prefix = g.op('Cast', [names[PREFIX_INPUT]], to=TensorProto.FLOAT)
        keep = g.op('Mul', [w, prefix])
        fresh = g.op('Mul', [g.op('Sub', [g.const(np.float32(1.0)), w]), actions])
        actions = g.op('Add', [keep, fresh])
    return actions


def affine_function(spec: PolicySpec, velocity: Sequence[float] = (0.01, 0.0, 0.0),
                    orientation: Sequence[float] = DOWN, gripper: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(W [H, A, D], b [H, A]) for 'move from the measured position at constant velocity
    (m per tick)': position_i = p + (i + 1)·v, fixed orientation and gripper opening."""
    layout = ActionLayout(spec.action_representation)
    pos = state_offset(spec, 'ee_position')
    horizon, dim = spec.chunk_length, layout.dim
    weights = np.zeros((horizon, dim, spec.state_dim))
    bias = np.zeros((horizon, dim))
    rest = layout.from_target(Pose(np.zeros(3), np.asarray(orientation)), gripper)
    for i in range(horizon):
        for axis in range(3):
            weights[i, axis, pos + axis] = 1.0
        bias[i] = rest
        bias[i, :3] = (i + 1) * np.asarray(velocity, dtype=np.float64)
    return weights, bias


def build_model(spec: PolicySpec, function: str = 'affine', *, weights: np.ndarray | None = None,
                bias: np.ndarray | None = None, center: Sequence[float] = (0.45, 0.08),
                radius: float = 0.08, height: float = 0.30, period_s: float = 4.0,
                lead_s: float = 0.0, clockwise: bool = False, gripper: float = 1.0,
                image_gain: float = 0.0, rename: dict[str, str] | None = None,
                dtypes: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX graph of `function` for `spec`. `rename`/`dtypes` change graph input names
    or dtypes (for startup-refusal tests); the graph is otherwise exactly what `spec`
    declares."""
    rename, dtypes = rename or {}, dtypes or {}
    g = _Graph()
    names = {t.name: rename.get(t.name, t.name) for t in spec.inputs}
    graph_inputs = [helper.make_tensor_value_info(names[t.name], _DTYPES[dtypes.get(t.name, t.dtype)],
                                                  list(t.shape)) for t in spec.inputs]
    layout = ActionLayout(spec.action_representation)
    horizon, dim = spec.chunk_length, layout.dim
    if STATE_INPUT not in names:
        raise ValueError(f'the {function!r} test policy needs a state input')
    state = _newest_state(g, names[STATE_INPUT])
    if function == 'affine':
        if weights is None or bias is None:
            weights, bias = affine_function(spec, gripper=gripper)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (horizon, dim, spec.state_dim):
            raise ValueError(f'affine weights must be {[horizon, dim, spec.state_dim]}, got '
                             f'{list(weights.shape)}')
        flat = weights.transpose(2, 0, 1).reshape(spec.state_dim, horizon * dim)
        out = g.op('Add', [g.op('MatMul', [state, g.const(flat)]),
                           g.const(np.asarray(bias, dtype=np.float64).reshape(-1))])
        actions = g.op('Reshape', [out, g.const(np.array([1, horizon, dim], dtype=np.int64))])
    elif function == 'circle':
        pos = state_offset(spec, 'ee_position')
        xy = g.op('Gather', [state, g.const(np.array([pos, pos + 1], dtype=np.int64))], axis=1)
        rel = g.op('Sub', [xy, g.const(np.asarray(center, dtype=np.float64))])
        norm = g.op('Sqrt', [g.op('Add', [g.op('ReduceSum', [
            g.op('Mul', [rel, rel]), g.const(np.array([1], dtype=np.int64))], keepdims=1),
            g.const(np.float32(1e-12))])])
        unit = g.op('Div', [rel, norm])
        dt = 1.0 / spec.control_rate_hz
        omega = (-1.0 if clockwise else 1.0) * 2.0 * math.pi / period_s
        matrix = np.zeros((2, 2 * horizon))
        for i in range(horizon):
            phi = omega * (dt * i + lead_s)
            matrix[:, 2 * i] = radius * np.array([math.cos(phi), -math.sin(phi)])
            matrix[:, 2 * i + 1] = radius * np.array([math.sin(phi), math.cos(phi)])
        flat = g.op('Add', [g.op('MatMul', [unit, g.const(matrix)]),
                            g.const(np.tile(np.asarray(center, dtype=np.float64), horizon))])
        xy_chunk = g.op('Reshape', [flat, g.const(np.array([1, horizon, 2], dtype=np.int64))])
        rest = layout.from_target(Pose(np.array([0.0, 0.0, height]), DOWN), gripper)[2:]
        rest_chunk = g.const(np.tile(rest, (1, horizon, 1)))
        # Keep `state` in the graph's data flow for every state layout.
        actions = g.op('Concat', [xy_chunk, rest_chunk], axis=2)
    else:
        raise ValueError(f'unknown test function {function!r}; known: affine, circle')
    actions = _finish(g, spec, names, actions, image_gain)
    g.nodes.append(helper.make_node('Identity', [actions], [ACTIONS_OUTPUT]))
    output = helper.make_tensor_value_info(ACTIONS_OUTPUT, TensorProto.FLOAT, [1, horizon, dim])
    graph = helper.make_graph(g.nodes, f'{spec.name}_{function}', graph_inputs, [output],
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='bc_robot.testing_models')
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


def write_model(model_dir: str | Path, spec: PolicySpec, model: onnx.ModelProto | None = None,
                **build_kwargs) -> Path:
    """policy.onnx (built from `spec` unless `model` is given) + policy.json with its sha256."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model if model is not None else build_model(spec, **build_kwargs),
              str(model_dir / 'policy.onnx'))
    save_spec(spec, model_dir)
    return model_dir


def circle_reference(spec: PolicySpec, position: Sequence[float], *, center=(0.45, 0.08),
                     radius=0.08, height=0.30, period_s=4.0, lead_s=0.0, clockwise=False,
                     gripper=1.0) -> np.ndarray:
    """numpy twin of the circle graph (without prefix/image terms), for exact checks."""
    layout = ActionLayout(spec.action_representation)
    rel = np.asarray(position[:2], dtype=np.float64) - np.asarray(center)
    unit = rel / math.sqrt(float(rel @ rel) + 1e-12)
    omega = (-1.0 if clockwise else 1.0) * 2.0 * math.pi / period_s
    dt = 1.0 / spec.control_rate_hz
    out = np.zeros((spec.chunk_length, layout.dim))
    rest = layout.from_target(Pose(np.array([0.0, 0.0, height]), DOWN), gripper)
    for i in range(spec.chunk_length):
        phi = omega * (dt * i + lead_s)
        c, s = math.cos(phi), math.sin(phi)
        out[i] = rest
        out[i, 0] = center[0] + radius * (unit[0] * c - unit[1] * s)
        out[i, 1] = center[1] + radius * (unit[0] * s + unit[1] * c)
    return out
