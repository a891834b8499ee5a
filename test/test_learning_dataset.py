"""Dataset from bags: observations built like observation_node builds them, labels timed like
the policy node executes them, HG-DAgger labels and weights, and bags refused by name."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.spec import CameraSpec
from bc_robot.learning.config import DaggerConfig, DataConfig, load_config, parse_override
from bc_robot.learning.convert import convert_episode, convert_episodes, find_episodes
from bc_robot.core.state import state_slice
from bc_robot.learning.frames import ActionFrame
from bc_robot.learning.dataset import BatchSampler, ChunkDataset, compute_stats, split_episodes
from bc_robot.learning.synthetic import SyntheticEpisode, render, tcp_path, write_episode

GOAL = (0.6, 0.1)
CONFIG = DataConfig(cameras=(CameraSpec('front', 24, 32),), history=2, chunk_length=8)


def _held(t: np.ndarray, rate: float) -> np.ndarray:
    """Time of the message a zero-order hold of a `rate` Hz stream (from 0) gives at t."""
    return np.floor(t * rate + 1e-6) / rate


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    return write_episode(tmp_path_factory.mktemp('demo') / 'demo',
                         SyntheticEpisode(goal=GOAL, duration_s=2.0, label_offset=0.01,
                                          cameras=('front',)))


def test_demo_observations_and_labels(demo):
    ep = convert_episode(demo, CONFIG)
    assert ep.kind == 'demo' and ep.human.all() and np.all(ep.weights == 1)
    # One observation per front frame (30 Hz) while commands exist.
    assert len(ep) == 60
    np.testing.assert_allclose(np.diff(ep.times), 1 / 30, atol=1e-6)
    stamps = ep.times  # the synthetic sim clock starts with the first frame
    # Image: the raw frame through the one preprocessing function.
    i = 17
    raw = render(GOAL, tcp_path(GOAL, stamps[i:i + 1], 2.0)[0], (48, 64))
    np.testing.assert_array_equal(ep.images['front'][i], preprocess_image(raw, CONFIG.cameras[0]))
    # State: TCP position interpolated to the frame stamp; gripper measured (open).
    np.testing.assert_allclose(ep.state[:, :3], tcp_path(GOAL, stamps, 2.0), atol=2e-4)
    assert np.all(ep.state[stamps < 1.0, 9] == 1.0)
    # Labels: the human's clean command (label topic, 50 Hz, +1 cm in y) at ts + k/20.
    label_t = stamps[:, None] + 0.05 * np.arange(8)[None]
    held = _held(label_t, 50.0)
    expected = tcp_path(GOAL, held.reshape(-1) + 0.1, 2.0).reshape(60, 8, 3) + [0, 0.01, 0]
    valid = ep.valid
    np.testing.assert_allclose(ep.actions[..., :3][valid], expected[valid], atol=1e-5)
    gripper = np.where(_held(label_t, 10.0) < 1.2 - 1e-9, 1.0, 0.0)
    np.testing.assert_array_equal(ep.actions[..., 9][valid], gripper[valid])
    # Rotation: gripper pointing down as 6D.
    np.testing.assert_allclose(ep.actions[0, 0, 3:9], [1, 0, 0, 0, -1, 0], atol=1e-6)
    # Padding mask: chunks running past the last command repeat its last valid action.
    assert valid[0].all() and not valid[-1, 1:].any()
    np.testing.assert_array_equal(ep.actions[-1, 1:], np.repeat(ep.actions[-1, :1], 7, 0))
    # History: the observation nearest ts - 1/20 (two frames back at 30 Hz), oldest first.
    assert ep.history[10].tolist() == [8, 10] and ep.history[0].tolist() == [0, 0]


def test_axial_labels_carry_the_same_targets(demo):
    """data.action_representation: the layout of the labels, not their content."""
    rot6d = convert_episode(demo, CONFIG)
    axial = convert_episode(demo, replace(
        CONFIG, action_representation='ee_pose_axial_gripper'))
    assert axial.actions.shape == rot6d.actions.shape[:2] + (13,)
    np.testing.assert_array_equal(axial.actions[..., :3], rot6d.actions[..., :3])
    np.testing.assert_array_equal(axial.actions[..., 12], rot6d.actions[..., 9])
    # pointing down, x along base x: tool z = -z, x xᵀ has xx = 1 only
    np.testing.assert_allclose(axial.actions[0, 0, 3:12], [0, 0, -1, 1, 0, 0, 0, 0, 0],
                               atol=1e-6)


SIM_CONFIG = DataConfig(cameras=(CameraSpec('front', 24, 32),), chunk_length=8,
                        state_keys=('ee_position', 'gripper', 'sim_objects'))


def test_simulation_ground_truth_state_is_relative_to_the_tcp(demo):
    ep = convert_episode(demo, SIM_CONFIG)
    cube = np.array(SyntheticEpisode().cube)
    tcp = ep.state[:, :3]
    np.testing.assert_allclose(tcp, tcp_path(GOAL, ep.times, 2.0), atol=2e-4)
    np.testing.assert_allclose(ep.state[:, 4:7], cube - tcp, atol=1e-6)
    np.testing.assert_allclose(ep.state[:, 7:9], np.broadcast_to(np.array(GOAL) - cube[:2],
                                                              (len(ep), 2)), atol=1e-6)


def test_auxiliary_keys_are_targets_beside_the_state_not_in_it(demo):
    """data.auxiliary_keys: the same offsets the state key would carry, kept apart from the
    encoder's input; batches hand over the latest observation's, statistics cover them."""
    given = convert_episode(demo, SIM_CONFIG)
    aux = convert_episode(demo, replace(SIM_CONFIG, state_keys=('ee_position', 'gripper'),
                                        auxiliary_keys=('sim_objects',)))
    assert aux.state.shape[1] == 4 and aux.auxiliary.shape == (len(aux), 5)
    np.testing.assert_array_equal(aux.auxiliary, given.state[:, 4:9])
    np.testing.assert_array_equal(aux.state, given.state[:, :4])
    assert convert_episode(demo, CONFIG).auxiliary.shape == (60, 0)
    dataset = ChunkDataset([aux], ['front'])
    batch = dataset.batch(np.array([0, 7, 30]))
    np.testing.assert_array_equal(batch.auxiliary.numpy(), aux.auxiliary[[0, 7, 30]])
    stats = compute_stats([aux])
    np.testing.assert_allclose(stats['auxiliary'].mean, aux.auxiliary.mean(0), atol=1e-6)
    assert 'auxiliary' not in compute_stats([given])


def test_auxiliary_keys_need_their_topic_and_refuse_given_keys(tmp_path):
    bare = write_episode(tmp_path / 'bare', SyntheticEpisode(
        goal=GOAL, duration_s=1.0, cameras=('front',), drop_topics=('/sim/task_state',)))
    with pytest.raises(ValueError, match='/sim/task_state'):
        convert_episode(bare, replace(CONFIG, auxiliary_keys=('sim_objects',)))
    with pytest.raises(ValueError, match=r"auxiliary_keys \['gripper'\] are already in "
                                         r"data.state_keys"):
        DataConfig(auxiliary_keys=('gripper',))
    with pytest.raises(ValueError, match="auxiliary_keys entry 'cube' is unknown"):
        DataConfig(auxiliary_keys=('cube',))
    with pytest.raises(ValueError, match=r'train.auxiliary_weight = -1 must be a number'):
        load_config(None, {'train.auxiliary_weight': -1})


def test_end_at_success_drops_what_follows_the_first_success(tmp_path):
    path = write_episode(tmp_path / 'ep', SyntheticEpisode(
        goal=GOAL, duration_s=2.0, cameras=('front',), success_at_s=1.2))
    whole = convert_episode(path, CONFIG)
    ended = convert_episode(path, replace(CONFIG, end_at_success=True))
    assert whole.times[-1] > 1.9
    # /sim/task_state runs at 10 Hz: the first success message is at 1.2 s
    assert ended.times[-1] <= 1.2 + 1e-6 and len(ended) == np.sum(whole.times <= 1.2 + 1e-6)
    label_t = ended.times[:, None] + 0.05 * np.arange(8)[None]
    np.testing.assert_array_equal(ended.valid, label_t <= 1.2 + 1e-9)
    # After the end the chunk holds the last command before it (no lift-off to learn).
    last = ended.actions[-1]
    np.testing.assert_array_equal(last[1:], np.repeat(last[:1], 7, 0))
    # 'best': on to where the distance stops shrinking (the TCP arrives at 1.4 s; the task
    # state at 1.3 s is still millimetres away).
    best = convert_episode(path, replace(CONFIG, end_at_success='best'))
    assert 1.3 < best.times[-1] <= 1.4 + 1e-6
    assert len(best) == np.sum(whole.times <= 1.4 + 1e-6)
    # Without a task state the episode is kept whole.
    bare = write_episode(tmp_path / 'bare', SyntheticEpisode(
        goal=GOAL, duration_s=2.0, cameras=('front',), drop_topics=('/sim/task_state',)))
    assert len(convert_episode(bare, replace(CONFIG, end_at_success=True))) == len(whole)


def test_sim_clock_is_the_time_base_whatever_the_recorder_clock(tmp_path):
    """Log times at half real time (an overloaded sim): header stamps still line up."""
    normal = convert_episode(write_episode(tmp_path / 'a', SyntheticEpisode(
        goal=GOAL, duration_s=1.5, cameras=('front',))), CONFIG)
    slow = convert_episode(write_episode(tmp_path / 'b', SyntheticEpisode(
        goal=GOAL, duration_s=1.5, cameras=('front',), real_time_factor=0.5)), CONFIG)
    np.testing.assert_allclose(slow.actions, normal.actions, atol=1e-6)
    np.testing.assert_allclose(slow.times, normal.times, atol=1e-6)
    # On the recorder's (wall) clock the same frames are 1/15 s apart instead.
    wall = convert_episode(tmp_path / 'b', DataConfig(
        cameras=CONFIG.cameras, history=2, chunk_length=8, time_source='log'))
    np.testing.assert_allclose(np.diff(wall.times)[:5], 1 / 15, atol=1e-6)


def test_dagger_episode_labels_and_weights(tmp_path):
    path = write_episode(tmp_path / 'dagger', SyntheticEpisode(
        goal=GOAL, duration_s=2.4, label_offset=0.02, cameras=('front',),
        interventions=((1.0, 1.6),)))
    weights = DaggerConfig(intervention_weight=3.0, pre_intervention_window_s=0.3,
                           pre_intervention_weight=0.25, robot_weight=1.0)
    ep = convert_episode(path, CONFIG, weights)
    assert ep.kind == 'dagger'
    stamps = ep.times
    human = (stamps >= 1.0) & (stamps < 1.6)
    np.testing.assert_array_equal(ep.human, human)
    before = (stamps >= 0.7) & (stamps < 1.0)
    np.testing.assert_array_equal(ep.weights, np.where(human, 3.0, np.where(before, 0.25, 1.0)))
    # First action of each chunk: human label (+2 cm y) during the takeover, the executed
    # target (no offset) elsewhere.
    t = stamps
    lead = tcp_path(GOAL, _held(t, 50.0) + 0.1, 2.4)
    executed = tcp_path(GOAL, _held(t, 100.0) + 0.1, 2.4)
    inside = human & (t >= 1.0 + 0.02)  # the human's first command of the segment arrived
    np.testing.assert_allclose(ep.actions[inside, 0, :3], lead[inside] + [0, 0.02, 0], atol=1e-5)
    outside = ~human
    np.testing.assert_allclose(ep.actions[outside, 0, :3], executed[outside], atol=1e-5)


def test_zero_weight_samples_take_no_batch_slot_but_stay_as_history(tmp_path):
    """HG-DAgger's plain aggregation weighs what the policy did 0: those samples must not be
    drawn (they would waste batch slots), yet the frames stay as history of later samples."""
    path = write_episode(tmp_path / 'dagger', SyntheticEpisode(
        goal=GOAL, duration_s=2.4, cameras=('front',), interventions=((1.0, 1.6),)))
    ep = convert_episode(path, CONFIG, DaggerConfig(robot_weight=0.0))
    assert ep.history.shape[1] == 2 and 0 < ep.human.sum() < len(ep)
    dataset = ChunkDataset([ep], ['front'])
    assert len(dataset) == int(ep.human.sum())
    assert (dataset.weights > 0).all() and dataset.human.all()
    first = int(np.flatnonzero(ep.human)[0])
    np.testing.assert_array_equal(dataset.obs_index[0], ep.history[first])
    assert ep.history[first][0] < first   # its history frame is a dropped policy sample
    batch = dataset.batch(np.arange(len(dataset)))
    np.testing.assert_array_equal(batch.actions.numpy(), ep.actions[ep.human])
    np.testing.assert_array_equal(batch.images['front'][0].numpy(),
                                  ep.images['front'][ep.history[first]])
    robot_only = convert_episode(path, CONFIG, DaggerConfig(robot_weight=0.0,
                                                            intervention_weight=0.0))
    with pytest.raises(ValueError, match=r'every sample of 1 episode\(s\) weighs 0'):
        ChunkDataset([robot_only], ['front'])


def test_demo_without_teleop_topics_is_labelled_with_the_executed_target(tmp_path, caplog):
    path = write_episode(tmp_path / 'direct', SyntheticEpisode(
        goal=GOAL, duration_s=1.0, cameras=('front',), label_offset=0.05,
        drop_topics=('/bc/teleop/label', '/bc/teleop/target', '/bc/teleop/gripper')))
    ep = convert_episode(path, CONFIG)
    executed = tcp_path(GOAL, _held(ep.times, 100.0) + 0.1, 1.0)
    np.testing.assert_allclose(ep.actions[:, 0, :3], executed, atol=1e-5)
    assert 'labelling it with the executed /target_pose' in caplog.text


@pytest.mark.parametrize('settings, config, named', [
    (dict(drop_topics=('/camera/front/image_raw',)), CONFIG, '/camera/front/image_raw'),
    (dict(drop_topics=('/current_pose',)), CONFIG, '/current_pose'),
    (dict(drop_topics=('/joint_states',)), CONFIG, '/joint_states'),
    (dict(rates={'/bc/teleop/label': 5.0}), CONFIG, '/bc/teleop/label runs at 5 Hz'),
    (dict(rates={'/camera/front/image_raw': 1.0}), CONFIG,
     '/camera/front/image_raw runs at 1 Hz'),
    (dict(rates={'/current_pose': 10.0}), CONFIG, '/current_pose runs at 10 Hz'),
    (dict(interventions=((0.5, 1.0),), drop_topics=('/bc/teleop/label', '/bc/teleop/target')),
     CONFIG, 'required topic /bc/teleop/label is missing'),
    (dict(interventions=((0.5, 1.0),), drop_topics=('/target_pose',)), CONFIG,
     'required topic /target_pose is missing'),
    (dict(), DataConfig(cameras=(CameraSpec('side', 24, 32),)), '/camera/side/image_raw'),
    (dict(drop_topics=('/sim/task_state',)), SIM_CONFIG, 'required topic /sim/task_state'),
    (dict(cube=None), SIM_CONFIG, '/sim/task_state has no cube and goal positions'),
])
def test_bad_bags_are_refused_naming_file_and_topic(tmp_path, settings, config, named):
    path = write_episode(tmp_path / 'bad', SyntheticEpisode(
        goal=GOAL, duration_s=1.5, cameras=('front',), **settings))
    with pytest.raises(ValueError) as info:
        convert_episode(path, config)
    assert named in str(info.value)
    assert str(path / 'bad.mcap') in str(info.value)


def test_truncated_bag_is_refused_naming_the_file(demo, tmp_path):
    copy = tmp_path / 'cut'
    copy.mkdir()
    mcap = next(demo.glob('*.mcap'))
    data = mcap.read_bytes()
    (copy / 'cut.mcap').write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r'cut\.mcap is truncated'):
        convert_episode(copy, CONFIG)


def test_find_and_convert_skip_discarded_and_failed_demos(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root = tmp_path / 'episodes'
    for name, meta in (('a', {}), ('b', {'status': 'discarded'}), ('c', {'success': False}),
                       ('d', {'success': True})):
        write_episode(root / name, SyntheticEpisode(goal=GOAL, duration_s=1.0,
                                                    cameras=('front',), metadata=meta))
    (root / 'notes.txt').write_text('not an episode')
    paths = find_episodes([str(root)])
    assert [p.name for p in paths] == ['a', 'b', 'c', 'd']
    assert [p.name for p in find_episodes([str(root / '[ad]')])] == ['a', 'd']
    episodes = convert_episodes(paths, CONFIG)
    assert [Path(e.source).name for e in episodes] == ['a', 'd']
    assert 'skipped (discarded)' in caplog.text and 'demo marked unsuccessful' in caplog.text
    with pytest.raises(ValueError, match='matches nothing'):
        find_episodes([str(tmp_path / 'missing*')])


def test_split_stats_and_batches(tmp_path):
    episodes = [convert_episode(write_episode(tmp_path / f'e{i}', SyntheticEpisode(
        goal=(0.5, -0.2 + 0.1 * i), duration_s=1.0, cameras=('front',))), CONFIG)
        for i in range(5)]
    train, val = split_episodes(episodes, 0.2, seed=3)
    assert len(train) == 4 and len(val) == 1 and val[0] not in train
    stats = compute_stats(train)
    train_actions = np.concatenate([e.actions[e.valid] for e in train])
    np.testing.assert_allclose(stats['action'].mean, train_actions.mean(0), atol=1e-6)
    assert len(stats['state'].mean) == CONFIG.state_dim
    assert all(s >= 1e-2 for s in stats['action'].std)  # constant dims get the floor
    # model.relative_position: position labels relative to the sample's latest measured TCP.
    anchor = state_slice(CONFIG.state_keys, 'ee_position')
    relative = compute_stats(train, ActionFrame(anchor))
    expected = np.concatenate([(e.actions[:, :, :3] - e.state[e.history[:, -1]][:, None, anchor])
                               [e.valid] for e in train])
    np.testing.assert_allclose(relative['action'].mean[:3], expected.mean(0), atol=1e-6)
    np.testing.assert_allclose(relative['action'].mean[3:], stats['action'].mean[3:], atol=1e-9)
    assert max(relative['action'].std[:3]) < max(stats['action'].std[:3])
    planar = compute_stats(train, ActionFrame(anchor, (1.0, 1.0, 0.0)))  # relative_position: xy
    np.testing.assert_allclose(planar['action'].mean[:2], expected.mean(0)[:2], atol=1e-6)
    np.testing.assert_allclose(planar['action'].mean[2:], stats['action'].mean[2:], atol=1e-9)
    dataset = ChunkDataset(train, ['front'])
    batch = dataset.batch(np.array([0, 5, len(dataset) - 1]))
    assert batch.images['front'].shape == (3, 2, 24, 32, 3)
    assert batch.state.shape == (3, 2, CONFIG.state_dim)
    assert batch.actions.shape == (3, 8, 10) and batch.valid.shape == (3, 8)
    # DDP-style sampling: two ranks see disjoint halves of each epoch.
    seen = [np.concatenate([BatchSampler(len(dataset), 8, 0, r, 2).next() for _ in range(4)])
            for r in range(2)]
    assert not set(seen[0]) & set(seen[1])


def test_config_errors_name_the_key_and_value(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('head: flow\ntrain:\n  stepz: 10\n')
    with pytest.raises(ValueError, match=r"train has unknown key\(s\) \['stepz'\]"):
        load_config(path)
    path.write_text('head: flow\ntrain:\n  lr: -1\n')
    with pytest.raises(ValueError, match='train.lr = -1'):
        load_config(path)
    with pytest.raises(ValueError, match="head 'tree'"):
        load_config(None, {'head': 'tree'})
    with pytest.raises(ValueError, match="state_keys entry 'elbow'"):
        load_config(None, {'data.state_keys': ['elbow']})
    with pytest.raises(ValueError, match=r"relative_position needs ee_position .*'gripper'"):
        load_config(None, {'model.relative_position': True, 'data.state_keys': ['gripper']})
    with pytest.raises(ValueError, match="relative_position must be true, false or distinct "
                                         "axes from 'xyz' .*, got 'yes'"):
        load_config(None, {'model.relative_position': 'yes'})
    with pytest.raises(ValueError, match="got 'xx'"):
        load_config(None, {'model.relative_position': 'xx'})
    assert load_config(None, {'model.relative_position': 'yx'}).model.relative_axes == (0, 1)
    with pytest.raises(ValueError, match="model.action_frame must be one of world, tool, got "
                                         "'camera'"):
        load_config(None, {'model.action_frame': 'camera'})
    with pytest.raises(ValueError, match="action_frame: tool .* needs model.relative_position: "
                                         "true, got 'xy'"):
        load_config(None, {'model.action_frame': 'tool', 'model.relative_position': 'xy'})
    with pytest.raises(ValueError, match=r"tool needs ee_rot6d in data.state_keys, got "
                                         r"\['ee_position', 'gripper'\]"):
        load_config(None, {'model.action_frame': 'tool', 'model.relative_position': True,
                           'data.state_keys': ['ee_position', 'gripper']})
    with pytest.raises(ValueError, match="tool needs data.action_representation "
                                         "ee_pose_rot6d_gripper, got 'ee_pose_axial_gripper'"):
        load_config(None, {'model.action_frame': 'tool', 'model.relative_position': True,
                           'data.action_representation': 'ee_pose_axial_gripper'})
    with pytest.raises(ValueError, match=r'train.state_noise = -0.5 must be a number in \[0, 10\]'):
        load_config(None, {'train.state_noise': -0.5})
    with pytest.raises(ValueError, match="data.end_at_success = 'yes' must be true, false or "
                                         "best"):
        load_config(None, {'data.end_at_success': 'yes'})
    assert parse_override('train.steps=20') == ('train.steps', 20)
    config = load_config(None, {'data.cameras': [{'name': 'wrist', 'height': 32, 'width': 32}]})
    assert config.data.cameras[0] == CameraSpec('wrist', 32, 32)
    assert json.loads(json.dumps(config.to_dict()))['data']['cameras'][0]['name'] == 'wrist'
    assert math.isclose(config.data.control_rate_hz, 20.0)
