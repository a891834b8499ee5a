"""Typed training configuration: what to read from the bags, the model, the optimiser, and
the HG-DAgger weighting. One YAML file per head under config/train/ (and readout.yaml, the
shipped default's recipe) fills these; every value is checked here so a typo or an
out-of-range number fails before minutes of data loading, with a message naming the key and
the value.

No torch import here: `bc-robot train --help` and config validation stay fast.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from bc_robot.core.spec import (ACTION_DIMS, ACTION_PLANAR, HEAD_TYPES, STATE_KEY_DIMS,
                                 CameraSpec, planar_offsets)

TRAINABLE_HEADS = tuple(h for h in HEAD_TYPES if h != 'test')
ARM_JOINTS = tuple(f'joint{i}' for i in range(1, 8))
FINGER_JOINTS = ('finger_joint1', 'finger_joint2')
POSITION_AXES = 'xyz'
ACTION_FRAMES = ('world', 'tool')  # model.action_frame (learning/frames.py)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _number(name: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and low <= value <= high
    _require(ok, f'{name} = {value!r} must be {"an int" if integer else "a number"} in '
                 f'[{low:g}, {high:g}]')


@dataclass(frozen=True)
class DataConfig:
    """How episodes become samples: cameras (policy crop/size), state layout, history,
    chunk length, control rate, and the topics each piece comes from."""

    cameras: tuple[CameraSpec, ...] = (CameraSpec('front', 64, 64),)
    camera_topics: dict[str, str] = field(default_factory=dict)  # name → topic override
    state_keys: tuple[str, ...] = ('ee_position', 'ee_rot6d', 'gripper')
    # State keys the encoder learns to predict from its inputs (weight train.auxiliary_weight)
    # without being given them: `sim_objects` teaches the cameras where the cube and goal
    # are, from positions every simulated recording carries, and the policy still deploys
    # on images and proprioception alone.
    auxiliary_keys: tuple[str, ...] = ()
    history: int = 1
    chunk_length: int = 16
    control_rate_hz: float = 20.0
    action_representation: str = 'ee_pose_rot6d_gripper'
    joint_states_topic: str = '/joint_states'
    current_pose_topic: str = '/current_pose'
    # The human's clean command, first topic present wins (label when the human drives).
    human_target_topics: tuple[str, ...] = ('/bc/teleop/label', '/bc/teleop/target')
    human_gripper_topic: str = '/bc/teleop/gripper'
    # What was executed (label where the policy drove).
    executed_target_topic: str = '/target_pose'
    executed_gripper_topic: str = '/gripper/target'
    policy_target_topic: str = '/bc/policy/target'
    intervention_topic: str = '/bc/intervention'
    # The simulator's task state (JSON): ground truth for the simulation-only state key
    # `sim_objects` and the success time for `end_at_success`.
    task_state_topic: str = '/sim/task_state'
    # End each episode where task_state_topic first reports success: what the human does
    # afterwards (lifting clear, pressing stop) is not the task, and learning it teaches the
    # policy to lift off early. 'best': where the task distance after success comes within
    # 1 mm of its smallest value instead (the human finished the task to their own
    # precision, then left). Episodes without that topic are kept whole.
    end_at_success: bool | str = False
    # 'header': header stamps (sim time) where messages carry one, the recorder's log time
    # mapped onto that clock otherwise; 'log': the recorder's log time everywhere.
    time_source: str = 'header'
    # Proprioception and command streams must run at least this fraction of the control
    # rate, or the bag is refused naming the topic.
    min_rate_fraction: float = 0.9
    # Cameras slower than this are refused (observations would be too stale to act on; a
    # loaded sim drops frames, so recordings at 4–5 Hz of a 15 Hz camera are common).
    min_camera_rate_hz: float = 2.0
    # As observation_node: other cameras and proprioception must be within max_skew_s of
    # each reference frame's stamp (proprioception is interpolated to it).
    max_skew_s: float = 0.04
    # Demo episodes whose episode.json says success: false are left out.
    skip_failed_demos: bool = True
    arm_joints: tuple[str, ...] = ARM_JOINTS
    finger_joints: tuple[str, ...] = FINGER_JOINTS
    finger_open_m: float = 0.04  # one finger's travel when fully open (sim arm.xml ctrlrange)

    def __post_init__(self) -> None:
        cams = tuple(c if isinstance(c, CameraSpec) else CameraSpec(
            **{**c, 'crop': tuple(c.get('crop', ()))}) for c in self.cameras)
        object.__setattr__(self, 'cameras', cams)
        names = [c.name for c in cams]
        _require(len(set(names)) == len(names), f'data.cameras names repeat: {names}')
        unknown = sorted(set(self.camera_topics) - set(names))
        _require(not unknown, f'data.camera_topics names cameras that are not configured: '
                              f'{unknown} (cameras: {names})')
        object.__setattr__(self, 'state_keys', tuple(self.state_keys))
        for key in self.state_keys:
            _require(key in STATE_KEY_DIMS, f'data.state_keys entry {key!r} is unknown; known: '
                                            f'{", ".join(STATE_KEY_DIMS)}')
        _require(bool(cams) or bool(self.state_keys),
                 'data needs at least one camera or state key')
        object.__setattr__(self, 'auxiliary_keys', tuple(self.auxiliary_keys))
        for key in self.auxiliary_keys:
            _require(key in STATE_KEY_DIMS, f'data.auxiliary_keys entry {key!r} is unknown; '
                                            f'known: {", ".join(STATE_KEY_DIMS)}')
        given = sorted(set(self.auxiliary_keys) & set(self.state_keys))
        _require(not given, f'data.auxiliary_keys {given} are already in data.state_keys: the '
                            f'encoder is given them, there is nothing to predict')
        _number('data.history', self.history, 1, 64, integer=True)
        _number('data.chunk_length', self.chunk_length, 1, 1000, integer=True)
        _number('data.control_rate_hz', self.control_rate_hz, 1.0, 1000.0)
        _require(self.action_representation in ACTION_DIMS,
                 f'data.action_representation {self.action_representation!r} is not one of '
                 f'{", ".join(ACTION_DIMS)}')
        _require(self.time_source in ('header', 'log'),
                 f'data.time_source {self.time_source!r} must be "header" or "log"')
        _number('data.min_rate_fraction', self.min_rate_fraction, 0.0, 1.0)
        _number('data.finger_open_m', self.finger_open_m, 1e-4, 1.0)
        _number('data.min_camera_rate_hz', self.min_camera_rate_hz, 0.1, 1000.0)
        _number('data.max_skew_s', self.max_skew_s, 0.0, 1.0)
        _require(isinstance(self.end_at_success, bool) or self.end_at_success == 'best',
                 f'data.end_at_success = {self.end_at_success!r} must be true, false or best')
        _require(isinstance(self.skip_failed_demos, bool),
                 f'data.skip_failed_demos = {self.skip_failed_demos!r} must be true or false')
        object.__setattr__(self, 'human_target_topics', tuple(self.human_target_topics))
        _require(len(self.human_target_topics) > 0, 'data.human_target_topics is empty')
        object.__setattr__(self, 'arm_joints', tuple(self.arm_joints))
        object.__setattr__(self, 'finger_joints', tuple(self.finger_joints))
        _require(len(self.arm_joints) == STATE_KEY_DIMS['joint_positions'],
                 f'data.arm_joints needs {STATE_KEY_DIMS["joint_positions"]} names, got '
                 f'{list(self.arm_joints)}')

    @property
    def action_dim(self) -> int:
        return ACTION_DIMS[self.action_representation]

    @property
    def state_dim(self) -> int:
        return sum(STATE_KEY_DIMS[k] for k in self.state_keys)

    @property
    def auxiliary_dim(self) -> int:
        return sum(STATE_KEY_DIMS[k] for k in self.auxiliary_keys)

    @property
    def reads_sim_objects(self) -> bool:
        return 'sim_objects' in self.state_keys or 'sim_objects' in self.auxiliary_keys

    def camera_topic(self, name: str) -> str:
        return self.camera_topics.get(name, f'/camera/{name}/image_raw')


@dataclass(frozen=True)
class DaggerConfig:
    """HG-DAgger / IWR-style sample weights (1.0 everywhere = plain aggregation).

    intervention_weight: samples where the human drove inside a policy episode.
    pre_intervention_weight: samples in the `pre_intervention_window_s` seconds before the
    operator took over (the policy was drifting into trouble there; 0 drops them).
    robot_weight: the other policy-driven samples of correction episodes."""

    intervention_weight: float = 1.0
    pre_intervention_window_s: float = 0.0
    pre_intervention_weight: float = 1.0
    robot_weight: float = 1.0
    demo_weight: float = 1.0

    def __post_init__(self) -> None:
        for key in ('intervention_weight', 'pre_intervention_weight', 'robot_weight',
                    'demo_weight'):
            _number(f'dagger.{key}', getattr(self, key), 0.0, 100.0)
        _number('dagger.pre_intervention_window_s', self.pre_intervention_window_s, 0.0, 60.0)


@dataclass(frozen=True)
class ModelConfig:
    """Encoder and head sizes. `head_options` are head-specific (see heads.py)."""

    channels: tuple[int, ...] = (16, 32, 64)
    keypoints: int = 32
    d_model: int = 128
    state_hidden: int = 64
    dropout: float = 0.0  # on the encoder's observation features, while training
    # Predict positions relative to the latest measured ee_position (added back inside the
    # graph, so the artifact still outputs absolute targets): "move 3 cm toward the cube"
    # is the same function wherever the arm starts, which generalizes from few demos.
    # true = every axis, or the axes to make relative ('xy': a table-top task's heights stay
    # absolute, so a small bias in predicted height cannot accumulate chunk after chunk).
    relative_position: bool | str = False
    # 'tool': positions relative to the TCP on every axis and, with the orientation, in the
    # TCP's own frame (learning/frames.py), so a push along the paddle is one action whatever
    # its direction on the table; 'world': the base frame.
    action_frame: str = 'world'
    # State keys kept in the state vector for the action frame only, hidden from the network
    # (zeros in its input): with `[ee_position]` a relative-position policy cannot tell
    # scenes apart by where the arm is on the table, so it must act on what it sees relative
    # to the TCP instead of recalling the demonstration that passed there.
    frame_only_keys: tuple[str, ...] = ()
    # A camera whose image feeds an object readout instead of the policy's features: one
    # spatial-softmax keypoint per object on a two-layer detector, mapped to the table by a
    # small network per object, learns where the cube and goal are from the recordings'
    # `sim_objects` (data.auxiliary_keys); the policy reads that estimate as the
    # `sim_objects` state, relative to the measured TCP. A detector whose keypoint moves with
    # the object in the image reads new layouts to millimetres where the encoder above,
    # learning a mapping over a few dozen layouts, recalls them (docs/training.md, "Session
    # 29"). '' = none.
    object_readout: str = ''
    head_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'channels', tuple(self.channels))
        _require(1 <= len(self.channels) <= 5, f'model.channels {list(self.channels)} needs '
                                               f'1 to 5 stages')
        for c in self.channels:
            _number('model.channels entry', c, 4, 512, integer=True)
        _number('model.keypoints', self.keypoints, 1, 512, integer=True)
        _number('model.d_model', self.d_model, 8, 2048, integer=True)
        _require(self.d_model % 4 == 0, f'model.d_model = {self.d_model} must be a multiple '
                                        f'of 4 (attention heads)')
        _number('model.state_hidden', self.state_hidden, 4, 2048, integer=True)
        _number('model.dropout', self.dropout, 0.0, 0.9)
        axes = self.relative_position
        _require(isinstance(axes, bool) or (
            isinstance(axes, str) and axes != '' and set(axes) <= set(POSITION_AXES)
            and len(set(axes)) == len(axes)),
            f'model.relative_position must be true, false or distinct axes from '
            f'{POSITION_AXES!r} (e.g. xy), got {axes!r}')
        _require(self.action_frame in ACTION_FRAMES,
                 f'model.action_frame must be one of {", ".join(ACTION_FRAMES)}, got '
                 f'{self.action_frame!r}')
        _require(self.action_frame == 'world' or self.relative_axes == (0, 1, 2),
                 f'model.action_frame: tool predicts every position axis relative to the TCP: '
                 f'it needs model.relative_position: true, got {self.relative_position!r}')
        object.__setattr__(self, 'frame_only_keys', tuple(self.frame_only_keys))
        for key in self.frame_only_keys:
            _require(key in STATE_KEY_DIMS, f'model.frame_only_keys entry {key!r} is unknown; '
                                            f'known: {", ".join(STATE_KEY_DIMS)}')
        _require(len(set(self.frame_only_keys)) == len(self.frame_only_keys),
                 f'model.frame_only_keys has repeats: {list(self.frame_only_keys)}')
        _require(isinstance(self.object_readout, str),
                 f'model.object_readout must be a camera name or "", got '
                 f'{self.object_readout!r}')
        _require(isinstance(self.head_options, dict),
                 f'model.head_options must be a mapping, got {self.head_options!r}')

    @property
    def relative_axes(self) -> tuple[int, ...]:
        """Indices (0 = x) of the position axes predicted relative to the measured TCP."""
        axes = self.relative_position
        if isinstance(axes, bool):
            return (0, 1, 2) if axes else ()
        return tuple(i for i, name in enumerate(POSITION_AXES) if name in axes)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and loop settings."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    val_every: int = 250
    checkpoint_every: int = 500
    ema_decay: float = 0.0  # 0 = off; e.g. 0.995 for diffusion/flow
    augment_shift: int = 4  # random-shift augmentation in pixels (0 = off)
    # Gaussian noise on the encoder's state input, in units of each dimension's std (0 = off):
    # with few demos the exact TCP position identifies the episode, and a network that can
    # read it memorises the trajectory instead of looking at the cameras.
    state_noise: float = 0.0
    threads: int = 0  # torch CPU threads (0 = torch default)
    parity_samples: int = 8  # held-out samples stored for the export parity check
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall time; 0 = off
    # Stop after this much process CPU time (all threads; 2 cores × 15 min = 30), the
    # budget that means the same on a shared machine; 0 = off.
    max_cpu_minutes: float = 0.0
    # Loss weight of chunk steps past the episode end (their label is the last action held):
    # 1 teaches the policy to hold still at the end, 0 masks them out as ACT does.
    padding_weight: float = 1.0
    # Weight of the data.auxiliary_keys regression (per normalized dimension, mean squared
    # error) next to the head's loss.
    auxiliary_weight: float = 1.0
    # model.object_readout learns from this many samples of each batch (0 = all of it): its
    # four numbers per image need fewer images per step than the head's chunks, and at the
    # camera's full resolution it costs more than the rest of the step.
    readout_samples: int = 16
    # Turn each sample's whole world (state, labels, auxiliary targets) by a random yaw in
    # ± this many degrees about the base z axis (learning/augment.py), so a policy that sees
    # the scene as coordinates learns the task relative to the objects; 0 = off. Policies
    # without cameras only: an image cannot be turned with the scene.
    augment_yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        _number('train.steps', self.steps, 1, 10_000_000, integer=True)
        _number('train.batch_size', self.batch_size, 1, 65536, integer=True)
        _number('train.lr', self.lr, 1e-8, 1.0)
        _number('train.weight_decay', self.weight_decay, 0.0, 1.0)
        _number('train.warmup_steps', self.warmup_steps, 0, 1_000_000, integer=True)
        _number('train.grad_clip', self.grad_clip, 0.0, 1e6)
        _number('train.val_fraction', self.val_fraction, 0.0, 0.9)
        _number('train.val_every', self.val_every, 1, 10_000_000, integer=True)
        _number('train.checkpoint_every', self.checkpoint_every, 1, 10_000_000, integer=True)
        _number('train.ema_decay', self.ema_decay, 0.0, 0.99999)
        _number('train.augment_shift', self.augment_shift, 0, 64, integer=True)
        _number('train.state_noise', self.state_noise, 0.0, 10.0)
        _number('train.readout_samples', self.readout_samples, 0, 65536, integer=True)
        _number('train.threads', self.threads, 0, 1024, integer=True)
        _number('train.parity_samples', self.parity_samples, 1, 1024, integer=True)
        _number('train.max_minutes', self.max_minutes, 0.0, 1e6)
        _number('train.max_cpu_minutes', self.max_cpu_minutes, 0.0, 1e6)
        _number('train.padding_weight', self.padding_weight, 0.0, 1.0)
        _number('train.auxiliary_weight', self.auxiliary_weight, 0.0, 100.0)
        _number('train.augment_yaw_deg', self.augment_yaw_deg, 0.0, 180.0)


@dataclass(frozen=True)
class TrainConfig:
    head: str = 'flow'
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.head in TRAINABLE_HEADS,
                 f'head {self.head!r} is not one of {", ".join(TRAINABLE_HEADS)}')
        _number('seed', self.seed, 0, 2**31 - 1, integer=True)
        _require(not self.model.relative_axes or 'ee_position' in self.data.state_keys,
                 f'model.relative_position needs ee_position in data.state_keys, got '
                 f'{list(self.data.state_keys)}')
        for key in self.model.frame_only_keys:
            _require(key in self.data.state_keys,
                     f'model.frame_only_keys entry {key!r} is not in data.state_keys '
                     f'{list(self.data.state_keys)}')
        if self.model.object_readout:
            self._check_object_readout()
        if self.model.action_frame == 'tool':
            _require('ee_rot6d' in self.data.state_keys,
                     f'model.action_frame: tool needs ee_rot6d in data.state_keys, got '
                     f'{list(self.data.state_keys)}')
            _require(self.data.action_representation == 'ee_pose_rot6d_gripper',
                     f'model.action_frame: tool needs data.action_representation '
                     f'ee_pose_rot6d_gripper, got {self.data.action_representation!r}')
        if self.train.augment_yaw_deg:
            self._check_turnable()

    def _check_object_readout(self) -> None:
        camera, d = self.model.object_readout, self.data
        _require(camera in [c.name for c in d.cameras],
                 f'model.object_readout camera {camera!r} is not in data.cameras '
                 f'{[c.name for c in d.cameras]}')
        _require(tuple(d.auxiliary_keys) == ('sim_objects',),
                 f'model.object_readout learns the cube and goal from data.auxiliary_keys: '
                 f'[sim_objects], got {list(d.auxiliary_keys)}')
        _require('ee_position' in d.state_keys,
                 f'model.object_readout reports the objects relative to the TCP: it needs '
                 f'ee_position in data.state_keys, got {list(d.state_keys)}')
        _require(d.history == 1, f'model.object_readout reads the latest frame only: it needs '
                                 f'data.history: 1, got {d.history}')

    def _check_turnable(self) -> None:
        yaw = self.train.augment_yaw_deg
        cameras = [c.name for c in self.data.cameras]
        _require(not cameras, f'train.augment_yaw_deg = {yaw!r} turns the world under the '
                              f'policy, which its cameras {cameras} would not see turn: it is '
                              f'for policies without cameras (data.cameras: [])')
        _require(self.data.action_representation in ACTION_PLANAR,
                 f'train.augment_yaw_deg cannot turn actions of '
                 f'{self.data.action_representation!r}; it can turn {", ".join(ACTION_PLANAR)}')
        for where, keys in (('data.state_keys', self.data.state_keys),
                            ('data.auxiliary_keys', self.data.auxiliary_keys)):
            try:
                planar_offsets(keys)
            except ValueError as exc:
                raise ValueError(f'train.augment_yaw_deg = {yaw!r}: {where}: {exc}') from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data['data']['cameras'] = [dict(dataclasses.asdict(c), crop=list(c.crop))
                                   for c in self.data.cameras]
        for section in data.values():
            if isinstance(section, dict):
                for key, value in section.items():
                    if isinstance(value, tuple):
                        section[key] = list(value)
        return data


def _build(cls, values: Any, where: str):
    """Dataclass from a mapping; unknown keys are an error naming them."""
    if values is None:
        return cls()
    _require(isinstance(values, Mapping), f'{where} must be a mapping, got {values!r}')
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    _require(not unknown, f'{where} has unknown key(s) {unknown}; known: {sorted(known)}')
    try:
        return cls(**dict(values))
    except TypeError as exc:
        raise ValueError(f'{where}: {exc}') from None


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    _require(isinstance(values, Mapping), f'training config must be a mapping, got {values!r}')
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    _require(not unknown, f'training config has unknown key(s) {unknown}; known: '
                          f'{sorted(known)}')
    return TrainConfig(
        head=values.get('head', TrainConfig.head),
        data=_build(DataConfig, values.get('data'), 'data'),
        model=_build(ModelConfig, values.get('model'), 'model'),
        train=_build(OptimConfig, values.get('train'), 'train'),
        dagger=_build(DaggerConfig, values.get('dagger'), 'dagger'),
        seed=values.get('seed', 0))


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None
                ) -> TrainConfig:
    """Read a YAML config (None = defaults) and apply dotted overrides such as
    {'train.steps': 100, 'head': 'mse'}."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        _require(path.is_file(), f'training config {path} does not exist')
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f'{path} is not valid YAML: {exc}') from None
        _require(isinstance(loaded, dict), f'{path} must hold a mapping')
        values = loaded
    for dotted, value in (overrides or {}).items():
        target = values
        parts = dotted.split('.')
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            _require(isinstance(target, dict), f'override {dotted!r} does not name a section')
        target[parts[-1]] = value
    try:
        return config_from_dict(values)
    except ValueError as exc:
        raise ValueError(f'{path}: {exc}' if path is not None else str(exc)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=200' → ('train.steps', 200) (value parsed as YAML)."""
    _require('=' in text, f'override {text!r} must look like key=value (e.g. train.steps=200)')
    key, raw = text.split('=', 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f'override {text!r}: value is not valid YAML: {exc}') from None
