"""Export: every head becomes policy.onnx + policy.json (opset ≥ 17, whole sampler inside),
ONNX Runtime agrees with torch on held-out observations with the same noise and prefix,
the project's runtime backend accepts the artifact, and a disagreement writes nothing."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from bc_robot.core.pose import rot6d_to_matrix
from bc_robot.core.spec import CameraSpec, NormStats, load_spec
from bc_robot.learning.config import ModelConfig
from bc_robot.learning.dataset import Batch, vector_stats
from bc_robot.learning.export import ExportParityError, export_policy, ort_session
from bc_robot.learning.policy import BCPolicy, ExportModule, PolicyArch

HEADS = ['mse', 'gmm', 'discrete', 'act', 'diffusion', 'flow']
CAMERAS = (CameraSpec('front', 16, 20), CameraSpec('wrist', 16, 16))
STATE_KEYS = ('ee_position', 'ee_rot6d', 'gripper')


def _stats() -> dict[str, NormStats]:
    rng = np.random.default_rng(0)
    mean = np.r_[0.5, 0.0, 0.2, 1, 0, 0, 0, -1, 0, 0.5]
    std = np.r_[0.1, 0.1, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.4]
    stats = NormStats(mean=tuple(mean), std=tuple(std), low=tuple(mean - 2 * std),
                      high=tuple(mean + 2 * std))
    state = NormStats(mean=tuple(mean + rng.normal(0, 0.01, 10)), std=tuple(std * 2))
    return {'action': stats, 'state': state}


def _policy(head: str, options: dict | None = None, relative: bool | str = False,
            dropout: float = 0.0, action_frame: str = 'world',
            auxiliary_keys: tuple[str, ...] = (),
            stats: dict[str, NormStats] | None = None,
            frame_only_keys: tuple[str, ...] = ()) -> BCPolicy:
    torch.manual_seed(0)
    arch = PolicyArch(head=head, cameras=CAMERAS, state_keys=STATE_KEYS, history=2,
                      chunk_length=4, control_rate_hz=20.0,
                      action_representation='ee_pose_rot6d_gripper',
                      auxiliary_keys=auxiliary_keys,
                      model=ModelConfig(channels=(8, 16), keypoints=8, d_model=32,
                                        state_hidden=16, relative_position=relative,
                                        dropout=dropout, action_frame=action_frame,
                                        frame_only_keys=frame_only_keys,
                                        head_options=options or {}))
    return BCPolicy(arch, stats or _stats())


def _observations(count: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{'image.front': rng.integers(0, 256, (2, 16, 20, 3), dtype=np.uint8),
             'image.wrist': rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
             'state': (np.r_[0.5, 0, 0.2, 1, 0, 0, 0, -1, 0, 1] + rng.normal(0, 0.05, (2, 10)))
             .astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize('head', HEADS)
def test_every_head_exports_with_parity_and_runs_in_the_runtime(head, tmp_path):
    options = {'hidden': 16} if head == 'discrete' else {}
    policy = _policy(head, options)
    result = export_policy(policy, _stats(), tmp_path / head, _observations(4),
                           provenance={'data': ['synthetic']})
    assert result.max_error <= 1e-3
    spec = load_spec(tmp_path / head)
    assert spec.head == head and spec.chunk_length == 4 and spec.action_dim == 10
    assert spec.accepts_prefix == (head in ('flow', 'diffusion'))
    assert (spec.input_named('noise') is not None) == (head in ('gmm', 'discrete', 'diffusion',
                                                                'flow'))
    assert spec.provenance['parity_max_error'] == result.max_error
    assert spec.normalization['action'].mean == _stats()['action'].mean
    model = onnx.load(str(tmp_path / head / 'policy.onnx'))
    assert max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')) >= 17
    assert not any(n.op_type in ('RandomNormal', 'RandomNormalLike', 'RandomUniform',
                                 'RandomUniformLike', 'Multinomial') for n in model.graph.node)

    # The runtime's backend (what policy_node loads) accepts the artifact as is.
    from bc_robot.runtime.onnx_backend import OnnxBackend
    backend = OnnxBackend(tmp_path / head, providers='cpu', warmup=1)
    observation = dict(_observations(1, seed=7)[0])
    if spec.accepts_prefix:  # the policy node passes zero weights when it has no prefix
        observation.update(prefix=np.zeros((4, 10), np.float32),
                           prefix_weights=np.zeros(4, np.float32))
    chunk = backend.infer(observation)
    assert chunk.shape == (4, 10) and np.all(np.isfinite(chunk))
    backend.close()


@pytest.mark.parametrize('regulariser', ['dropout', 'state_noise'])
def test_training_regularisers_act_in_training_only_and_stay_out_of_the_graph(regulariser,
                                                                             tmp_path):
    policy = _policy('mse', dropout=0.3 if regulariser == 'dropout' else 0.0)
    policy.encoder.state_noise = 0.5 if regulariser == 'state_noise' else 0.0
    obs = _observations(1)[0]
    images = {c: torch.from_numpy(obs[f'image.{c}'][None]) for c in ('front', 'wrist')}
    state = torch.from_numpy(obs['state'][None])
    policy.train()
    first, second = policy.encode(images, state)[0], policy.encode(images, state)[0]
    assert not torch.allclose(first, second)   # the regulariser is on while training
    policy.eval()
    assert torch.equal(policy.encode(images, state)[0], policy.encode(images, state)[0])
    result = export_policy(policy, _stats(), tmp_path / 'm', _observations(4),
                           provenance={'data': ['synthetic']})
    assert result.max_error <= 1e-3


@pytest.mark.parametrize('head, relative', [('mse', True), ('flow', True), ('flow', 'xy')])
def test_relative_position_is_added_back_inside_the_graph(head, relative, tmp_path):
    """model.relative_position: the graph still outputs absolute targets, anchored on the
    latest measured TCP position on the relative axes. A head whose output layer is zeroed
    predicts the mean offset (flow integrates a zero velocity from zero noise), so the
    exported positions must be that offset plus the state's ee_position there, the mean
    alone on an absolute axis."""
    policy = _policy(head, relative=relative)
    last = [m for m in policy.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    export_policy(policy, _stats(), tmp_path / head, _observations(4))
    session = ort_session(tmp_path / head / 'policy.onnx')
    names = [i.name for i in session.get_inputs()]
    observation = _observations(1, seed=5)[0]
    feed = {**observation, 'prefix': np.zeros((1, 4, 10), np.float32),
            'prefix_weights': np.zeros((1, 4), np.float32),
            'noise': np.zeros((1, 4, 10), np.float32)}
    feed = {k: (v[None] if k in observation else v) for k, v in feed.items() if k in names}
    chunk = session.run(None, feed)[0][0]
    mean = np.asarray(_stats()['action'].mean, np.float32)
    axes = [0, 1, 2] if relative is True else [0, 1]
    anchored = mean[:3].copy()
    anchored[axes] += observation['state'][-1, axes]
    np.testing.assert_allclose(chunk[:, :3], np.broadcast_to(anchored, (4, 3)), atol=1e-5)
    np.testing.assert_allclose(chunk[:, 3:], np.broadcast_to(mean[3:], (4, 7)), atol=1e-5)


@pytest.mark.parametrize('hidden', [True, False])
def test_frame_only_keys_reach_the_action_frame_but_not_the_network(hidden, tmp_path):
    """model.frame_only_keys [ee_position]: moving the arm elsewhere on the table moves the
    exported targets with it and changes nothing else, since the network never sees where
    the arm is; without the option the same move changes what the network predicts."""
    policy = _policy('flow', relative=True,
                     frame_only_keys=('ee_position',) if hidden else ())
    export_policy(policy, _stats(), tmp_path / 'm', _observations(4))
    session = ort_session(tmp_path / 'm' / 'policy.onnx')
    observation = _observations(1, seed=5)[0]
    moved = dict(observation, state=observation['state'].copy())
    shift = np.array([0.12, -0.07, 0.03], np.float32)
    moved['state'][:, :3] += shift
    noise = np.random.default_rng(3).standard_normal((1, 4, 10)).astype(np.float32)

    def chunk(obs):
        return session.run(None, {'image.front': obs['image.front'][None],
                                  'image.wrist': obs['image.wrist'][None],
                                  'state': obs['state'][None],
                                  'prefix': np.zeros((1, 4, 10), np.float32),
                                  'prefix_weights': np.zeros((1, 4), np.float32),
                                  'noise': noise})[0][0]

    here, there = chunk(observation), chunk(moved)
    offset = there - here
    offset[:, :3] -= shift
    if hidden:
        np.testing.assert_allclose(offset, 0.0, atol=1e-5)
    else:
        assert np.abs(offset).max() > 1e-3


def test_frame_only_keys_must_be_state_keys():
    from bc_robot.learning.config import load_config
    with pytest.raises(ValueError, match=r"model.frame_only_keys entry 'joint_positions' is not "
                                         r"in data.state_keys \['ee_position', 'gripper'\]"):
        load_config(None, {'data.state_keys': ['ee_position', 'gripper'],
                           'model.frame_only_keys': ['joint_positions']})
    with pytest.raises(ValueError, match=r"model.frame_only_keys entry 'elbow' is unknown"):
        ModelConfig(frame_only_keys=('elbow',))


def test_tool_frame_actions_are_turned_back_into_the_base_frame_inside_the_graph(tmp_path):
    """model.action_frame: tool: the head predicts in the TCP's frame; the graph outputs
    base-frame targets p_tcp + R·p, R·(rot6d columns), with R from the state's ee_rot6d."""
    policy = _policy('flow', relative=True, action_frame='tool')
    last = [m for m in policy.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    export_policy(policy, _stats(), tmp_path / 'tool', _observations(4))
    session = ort_session(tmp_path / 'tool' / 'policy.onnx')
    observation = _observations(1, seed=5)[0]
    feed = {'image.front': observation['image.front'][None],
            'image.wrist': observation['image.wrist'][None],
            'state': observation['state'][None], 'prefix': np.zeros((1, 4, 10), np.float32),
            'prefix_weights': np.zeros((1, 4), np.float32),
            'noise': np.zeros((1, 4, 10), np.float32)}
    chunk = session.run(None, feed)[0][0]
    mean = np.asarray(_stats()['action'].mean, np.float64)
    latest = observation['state'][-1].astype(np.float64)
    rotation = rot6d_to_matrix(latest[3:9])
    expected = np.r_[latest[:3] + rotation @ mean[:3], rotation @ mean[3:6],
                     rotation @ mean[6:9], mean[9]]
    np.testing.assert_allclose(chunk, np.broadcast_to(expected, (4, 10)), atol=1e-5)


@pytest.mark.parametrize('head', ['flow', 'diffusion'])
def test_prefix_reaches_the_graph(head, tmp_path):
    """The RTC prefix is an input of the exported sampler: a committed prefix changes the
    chunk, all-zero weights ignore it."""
    policy = _policy(head)
    export_policy(policy, _stats(), tmp_path / head, _observations(2))
    session = ort_session(tmp_path / head / 'policy.onnx')
    obs = _observations(1, seed=3)[0]
    rng = np.random.default_rng(0)
    base = {'image.front': obs['image.front'][None], 'image.wrist': obs['image.wrist'][None],
            'state': obs['state'][None],
            'noise': rng.standard_normal((1, 4, 10)).astype(np.float32),
            'prefix': np.zeros((1, 4, 10), dtype=np.float32),
            'prefix_weights': np.zeros((1, 4), dtype=np.float32)}
    plain = session.run(['actions'], base)[0]
    other_prefix = dict(base, prefix=np.ones((1, 4, 10), dtype=np.float32))
    np.testing.assert_array_equal(session.run(['actions'], other_prefix)[0], plain)
    weighted = dict(other_prefix, prefix_weights=np.array([[1, 1, 0.5, 0]], dtype=np.float32))
    assert np.abs(session.run(['actions'], weighted)[0] - plain).max() > 1e-4


def test_stochastic_heads_draw_from_the_noise_input(tmp_path):
    export_policy(_policy('flow'), _stats(), tmp_path / 'flow', _observations(2))
    session = ort_session(tmp_path / 'flow' / 'policy.onnx')
    obs = _observations(1, seed=3)[0]
    feed = {'image.front': obs['image.front'][None], 'image.wrist': obs['image.wrist'][None],
            'state': obs['state'][None], 'prefix': np.zeros((1, 4, 10), np.float32),
            'prefix_weights': np.zeros((1, 4), np.float32)}
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1, 4, 10)).astype(np.float32) for _ in range(2))
    first = session.run(['actions'], dict(feed, noise=a))[0]
    assert np.array_equal(first, session.run(['actions'], dict(feed, noise=a))[0])
    assert not np.allclose(first, session.run(['actions'], dict(feed, noise=b))[0])


def _square_batch(count: int, seed: int) -> Batch:
    """Front images with one bright square; the auxiliary target is where it is."""
    rng = np.random.default_rng(seed)
    front = np.zeros((count, 2, 16, 20, 3), np.uint8)
    where = rng.integers(0, [12, 16], (count, 2))
    for i, (row, col) in enumerate(where):
        front[i, :, row:row + 4, col:col + 4] = 255
    state = np.tile(np.r_[0.5, 0, 0.2, 1, 0, 0, 0, -1, 0, 1].astype(np.float32), (count, 2, 1))
    auxiliary = np.c_[where / 100.0, np.zeros((count, 3))].astype(np.float32)
    return Batch(images={'front': torch.from_numpy(front),
                         'wrist': torch.zeros(count, 2, 16, 16, 3, dtype=torch.uint8)},
                 state=torch.from_numpy(state),
                 actions=torch.from_numpy(np.tile(np.asarray(_stats()['action'].mean,
                                                             np.float32), (count, 4, 1))),
                 valid=torch.ones(count, 4, dtype=torch.bool), weight=torch.ones(count),
                 auxiliary=torch.from_numpy(auxiliary))


def test_auxiliary_targets_are_learned_and_stay_out_of_the_graph(tmp_path):
    """data.auxiliary_keys: the encoder learns to read the square's position from the image
    (measured against predicting the mean), and the exported graph is the same graph as
    without them: same inputs, same operators, parity."""
    train, held_out = _square_batch(256, seed=0), _square_batch(64, seed=1)
    stats = {**_stats(), 'auxiliary': vector_stats(train.auxiliary.numpy(), 'auxiliary')}
    policy = _policy('mse', auxiliary_keys=('sim_objects',), stats=stats)
    where = held_out.auxiliary[:, :2]
    spread = float((where - train.auxiliary[:, :2].mean(0)).square().mean().sqrt())
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for step in range(150):
        pick = torch.from_numpy(np.random.default_rng(step).integers(0, 256, 64))
        batch = Batch({k: v[pick] for k, v in train.images.items()}, train.state[pick],
                      train.actions[pick], train.valid[pick], train.weight[pick],
                      train.auxiliary[pick])
        optimizer.zero_grad()
        policy.loss(batch).backward()
        optimizer.step()
    policy.eval()
    miss = policy.predict_auxiliary(held_out.images, held_out.state)[:, :2] - where
    assert float(miss.square().mean().sqrt()) < 0.5 * spread
    with pytest.raises(ValueError, match=r"predict \['sim_objects'\] \(5 values\); the "
                                         r"batch has None"):
        policy(held_out.images, held_out.state, held_out.actions, held_out.valid,
               held_out.weight)
    with pytest.raises(ValueError, match='no auxiliary keys'):
        _policy('mse').predict_auxiliary(held_out.images, held_out.state)

    with torch.no_grad():  # a value nothing else in the network holds
        policy.auxiliary[-1].bias.fill_(1234.5)
    result = export_policy(policy, stats, tmp_path / 'aux', _observations(4))
    export_policy(_policy('mse'), _stats(), tmp_path / 'plain', _observations(4))
    assert result.max_error <= 1e-3
    graphs = [onnx.load(str(tmp_path / name / 'policy.onnx')).graph for name in ('aux', 'plain')]
    assert [i.name for i in graphs[0].input] == [i.name for i in graphs[1].input]
    assert [o.name for o in graphs[0].output] == [o.name for o in graphs[1].output]
    assert not any(np.any(onnx.numpy_helper.to_array(t) == np.float32(1234.5))
                   for t in graphs[0].initializer)
    assert load_spec(tmp_path / 'aux').normalization.keys() == {'action', 'state'}


def test_disagreement_beyond_tolerance_writes_nothing(tmp_path):
    out = tmp_path / 'model'
    first = export_policy(_policy('mse'), _stats(), out, _observations(2))
    before = (out / 'policy.onnx').read_bytes(), (out / 'policy.json').read_text()
    assert first.max_error > 0  # float32 round-off differs between the two engines
    torch.manual_seed(5)
    changed = _policy('mse')
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.01)
    with pytest.raises(ExportParityError, match=r'disagree on held-out sample 0.*nothing was'):
        export_policy(changed, _stats(), out, _observations(2), tolerance=1e-12)
    assert ((out / 'policy.onnx').read_bytes(), (out / 'policy.json').read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model']  # no temp folder left


def test_export_module_inputs_follow_the_contract():
    assert ExportModule(_policy('flow')).input_names() == [
        'image.front', 'image.wrist', 'state', 'prefix', 'prefix_weights', 'noise']
    assert ExportModule(_policy('act')).input_names() == ['image.front', 'image.wrist', 'state']
    act = _policy('act', {'z_scale': 1.0})
    assert ExportModule(act).input_names()[-1] == 'noise'
    with pytest.raises(ValueError, match=r"unknown model.head_options \['bogus'\]"):
        _policy('flow', {'bogus': 1})
