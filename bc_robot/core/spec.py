"""The policy artifact contract: `models/<name>/policy.json` beside `policy.onnx`.

Training writes it, the runtime reads everything from it and nothing from training config.
Field names are the JSON keys. Validation raises ValueError naming the field and value, so a
hand-edited or truncated spec is refused at startup with a message a user can act on.

ONNX interface (batch dimension fixed at 1):
  inputs   image.<camera>   uint8   [1, history, height, width, 3]   RGB, preprocessed
           state            float32 [1, history, state_dim]          raw units
           prefix           float32 [1, chunk_length, action_dim]    (accepts_prefix only)
           prefix_weights   float32 [1, chunk_length]                RTC soft mask, 0..1
           noise            float32 [1, chunk_length, action_dim]    (stochastic heads only)
  output   actions          float32 [1, chunk_length, action_dim]    raw units
Normalization is inside the graph; the statistics are also stored here for inspection.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

SCHEMA_VERSION = 1

# Named pieces of the state vector and their sizes; the order in `state_keys` is the order
# in the vector. `bc_robot.core.state.build_state_vector` assembles it.
STATE_KEY_DIMS = {
    'ee_position': 3,       # end-effector position in the base frame, m
    'ee_rot6d': 6,          # end-effector orientation, first two rotation-matrix columns
    'ee_quaternion': 4,     # end-effector orientation (x, y, z, w)
    'gripper': 1,           # gripper opening in [0, 1]
    'joint_positions': 7,   # arm joint angles, rad
    # Simulation only, for ablations: ground truth from /sim/task_state, relative —
    # cube − TCP (x, y, z) and goal − cube (x, y). observation_node has no source for it.
    'sim_objects': 5,
}
SIM_ONLY_STATE_KEYS = ('sim_objects',)

# Action layouts: absolute end-effector target + gripper opening, one per control tick.
QUATERNION_ACTIONS = 'ee_pose_quat_gripper'
AXIAL_ACTIONS = 'ee_pose_axial_gripper'
ACTION_DIMS = {
    'ee_pose_rot6d_gripper': 10,  # x, y, z, r6d(6), gripper
    QUATERNION_ACTIONS: 8,        # x, y, z, qx, qy, qz, qw, gripper
    # x, y, z, tool z axis (3), x xᵀ (xx, yy, zz, xy, xz, yz), gripper: blind to a half turn
    # about the tool axis, for symmetric tools (core.pose.matrix_to_axial)
    AXIAL_ACTIONS: 13,
}

# Offsets of the base-frame (x, y) pairs that turn when the whole world turns about the
# vertical axis (train.augment_yaw_deg); keys and layouts missing here cannot be turned.
STATE_KEY_PLANAR = {
    'ee_position': (0,),
    'ee_rot6d': (0, 3),        # both rotation-matrix columns
    'gripper': (),
    'sim_objects': (0, 3),     # cube − TCP (x, y, z), goal − cube (x, y)
}
ACTION_PLANAR = {'ee_pose_rot6d_gripper': (0, 3, 6)}


def planar_offsets(keys: Sequence[str]) -> tuple[int, ...]:
    """Offsets of the turning pairs in the concatenation of state `keys`."""
    offsets, start = [], 0
    for key in keys:
        if key not in STATE_KEY_PLANAR:
            raise ValueError(f'state key {key!r} cannot be turned with the world; these can: '
                             f'{", ".join(STATE_KEY_PLANAR)}')
        offsets += [start + o for o in STATE_KEY_PLANAR[key]]
        start += STATE_KEY_DIMS[key]
    return tuple(offsets)


HEAD_TYPES = ('mse', 'gmm', 'discrete', 'act', 'diffusion', 'flow', 'test')
ONNX_DTYPES = ('uint8', 'float32', 'int64')

IMAGE_INPUT_PREFIX = 'image.'
STATE_INPUT = 'state'
PREFIX_INPUT = 'prefix'
PREFIX_WEIGHTS_INPUT = 'prefix_weights'
NOISE_INPUT = 'noise'
ACTIONS_OUTPUT = 'actions'


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class CameraSpec:
    """One camera as the policy sees it: crop in source pixels (top, left, height, width;
    empty = whole frame) applied before resizing to (height, width)."""

    name: str
    height: int
    width: int
    crop: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _require(bool(self.name) and self.name.replace('_', '').isalnum(),
                 f'camera name {self.name!r} must be non-empty letters, digits or _')
        _require(isinstance(self.height, int) and 8 <= self.height <= 2048,
                 f'camera {self.name!r} height {self.height!r} must be an int in [8, 2048]')
        _require(isinstance(self.width, int) and 8 <= self.width <= 2048,
                 f'camera {self.name!r} width {self.width!r} must be an int in [8, 2048]')
        crop = tuple(self.crop)
        _require(len(crop) in (0, 4) and all(isinstance(v, int) and v >= 0 for v in crop),
                 f'camera {self.name!r} crop {list(crop)} must be [] or [top, left, height, '
                 f'width] of non-negative ints')
        _require(len(crop) == 0 or (crop[2] > 0 and crop[3] > 0),
                 f'camera {self.name!r} crop {list(crop)} has zero size')
        object.__setattr__(self, 'crop', crop)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        _require(self.dtype in ONNX_DTYPES,
                 f'tensor {self.name!r} dtype {self.dtype!r} is not one of {ONNX_DTYPES}')
        shape = tuple(self.shape)
        _require(all(isinstance(d, int) and d > 0 for d in shape),
                 f'tensor {self.name!r} shape {list(shape)} must be positive ints')
        object.__setattr__(self, 'shape', shape)


@dataclass(frozen=True)
class NormStats:
    """Per-dimension statistics of one vector (state or action) on the training split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...] = ()   # 1st percentile (discrete head bins)
    high: tuple[float, ...] = ()  # 99th percentile

    def __post_init__(self) -> None:
        for key in ('mean', 'std', 'low', 'high'):
            values = tuple(float(v) for v in getattr(self, key))
            _require(all(math.isfinite(v) for v in values),
                     f'normalization {key} has a non-finite value: {list(values)}')
            object.__setattr__(self, key, values)
        _require(len(self.std) == len(self.mean), 'normalization mean and std differ in length')
        _require(all(v > 0 for v in self.std), f'normalization std must be > 0: {list(self.std)}')


@dataclass(frozen=True)
class PolicySpec:
    name: str
    cameras: tuple[CameraSpec, ...]
    state_keys: tuple[str, ...]
    history: int
    action_representation: str
    chunk_length: int
    control_rate_hz: float
    head: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    accepts_prefix: bool = False
    sampler: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, NormStats] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    onnx_sha256: str = ''
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _require(self.schema_version == SCHEMA_VERSION,
                 f'schema_version {self.schema_version!r} is not supported '
                 f'(this bc_robot reads {SCHEMA_VERSION})')
        _require(bool(self.name), 'policy name must not be empty')
        names = [c.name for c in self.cameras]
        _require(len(set(names)) == len(names), f'camera names repeat: {names}')
        for key in self.state_keys:
            _require(key in STATE_KEY_DIMS,
                     f'state key {key!r} is unknown; known: {", ".join(STATE_KEY_DIMS)}')
        _require(len(self.state_keys) > 0 or len(self.cameras) > 0,
                 'a policy needs at least one camera or state key')
        _require(isinstance(self.history, int) and 1 <= self.history <= 64,
                 f'history {self.history!r} must be an int in [1, 64]')
        _require(self.action_representation in ACTION_DIMS,
                 f'action_representation {self.action_representation!r} is not one of '
                 f'{", ".join(ACTION_DIMS)}')
        _require(isinstance(self.chunk_length, int) and 1 <= self.chunk_length <= 1000,
                 f'chunk_length {self.chunk_length!r} must be an int in [1, 1000]')
        _require(isinstance(self.control_rate_hz, (int, float))
                 and 1.0 <= self.control_rate_hz <= 1000.0,
                 f'control_rate_hz {self.control_rate_hz!r} must be in [1, 1000]')
        _require(self.head in HEAD_TYPES, f'head {self.head!r} is not one of {HEAD_TYPES}')
        self._check_io()

    @property
    def state_dim(self) -> int:
        return sum(STATE_KEY_DIMS[k] for k in self.state_keys)

    @property
    def action_dim(self) -> int:
        return ACTION_DIMS[self.action_representation]

    def input_named(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def expected_inputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """The inputs the runtime will feed, derived from cameras/state/chunk settings."""
        expected = {}
        for cam in self.cameras:
            expected[IMAGE_INPUT_PREFIX + cam.name] = (
                'uint8', (1, self.history, cam.height, cam.width, 3))
        if self.state_keys:
            expected[STATE_INPUT] = ('float32', (1, self.history, self.state_dim))
        if self.accepts_prefix:
            expected[PREFIX_INPUT] = ('float32', (1, self.chunk_length, self.action_dim))
            expected[PREFIX_WEIGHTS_INPUT] = ('float32', (1, self.chunk_length))
        if self.input_named(NOISE_INPUT) is not None:
            expected[NOISE_INPUT] = ('float32', (1, self.chunk_length, self.action_dim))
        return expected

    def _check_io(self) -> None:
        declared = {t.name: (t.dtype, t.shape) for t in self.inputs}
        expected = self.expected_inputs()
        for name, (dtype, shape) in expected.items():
            _require(name in declared, f'spec inputs lack {name!r} ({dtype} {list(shape)})')
            _require(declared[name] == (dtype, shape),
                     f'spec input {name!r} is {declared[name][0]} {list(declared[name][1])}, '
                     f'but cameras/state/chunk settings need {dtype} {list(shape)}')
        extra = sorted(set(declared) - set(expected))
        _require(not extra, f'spec declares inputs the runtime does not feed: {extra}')
        outputs = {t.name: (t.dtype, t.shape) for t in self.outputs}
        want = ('float32', (1, self.chunk_length, self.action_dim))
        _require(outputs.get(ACTIONS_OUTPUT) == want,
                 f'spec output {ACTIONS_OUTPUT!r} must be float32 {list(want[1])} '
                 f'(chunk_length x action_dim), got {outputs.get(ACTIONS_OUTPUT)}')

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data['cameras'] = [dict(asdict(c), crop=list(c.crop)) for c in self.cameras]
        data['state_keys'] = list(self.state_keys)
        data['inputs'] = [dict(asdict(t), shape=list(t.shape)) for t in self.inputs]
        data['outputs'] = [dict(asdict(t), shape=list(t.shape)) for t in self.outputs]
        data['normalization'] = {k: {kk: list(vv) for kk, vv in asdict(v).items()}
                                 for k, v in self.normalization.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicySpec:
        _require(isinstance(data, dict), f'policy spec must be a JSON object, got {type(data).__name__}')
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        _require(not unknown, f'policy spec has unknown fields: {unknown}')
        try:
            fields = dict(data)
            fields['cameras'] = tuple(CameraSpec(**c) for c in data.get('cameras', []))
            fields['state_keys'] = tuple(data.get('state_keys', []))
            fields['inputs'] = tuple(TensorSpec(**t) for t in data.get('inputs', []))
            fields['outputs'] = tuple(TensorSpec(**t) for t in data.get('outputs', []))
            fields['normalization'] = {k: _norm_stats(k, v)
                                       for k, v in data.get('normalization', {}).items()}
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f'policy spec is malformed: {exc}') from None


def _norm_stats(key: str, values: dict[str, Any]) -> NormStats:
    """NormStats whose errors say which vector ('state', 'action') they are about."""
    try:
        return NormStats(**values)
    except ValueError as exc:
        raise ValueError(f'normalization[{key!r}]: {exc}') from None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def load_spec(model_dir: str | Path, verify_hash: bool = True) -> PolicySpec:
    """Read `policy.json` from a model folder; with verify_hash, refuse an ONNX file whose
    sha256 is not the one recorded (a half-copied or swapped model)."""
    model_dir = Path(model_dir)
    spec_path = model_dir / 'policy.json'
    _require(spec_path.is_file(), f'policy spec not found: {spec_path}')
    try:
        data = json.loads(spec_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f'{spec_path} is not valid JSON: {exc}') from None
    try:
        spec = PolicySpec.from_json(data)
    except ValueError as exc:
        raise ValueError(f'{spec_path}: {exc}') from None
    onnx_path = model_dir / 'policy.onnx'
    _require(onnx_path.is_file(), f'policy graph not found: {onnx_path}')
    if verify_hash and spec.onnx_sha256:
        actual = sha256_file(onnx_path)
        _require(actual == spec.onnx_sha256,
                 f'{onnx_path} sha256 {actual} does not match policy.json onnx_sha256 '
                 f'{spec.onnx_sha256}')
    return spec


def save_spec(spec: PolicySpec, model_dir: str | Path) -> Path:
    """Write policy.json, with the sha256 of the policy.onnx already in the folder."""
    model_dir = Path(model_dir)
    digest = sha256_file(model_dir / 'policy.onnx')
    data = spec.to_json()
    data['onnx_sha256'] = digest
    path = model_dir / 'policy.json'
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + '\n')
    tmp.replace(path)
    return path
