"""Yaw augmentation: the whole world turns together, heights and the gripper stay, relative
geometry survives, normalization matches what the network sees, and what cannot turn is
refused by name."""
import math

import numpy as np
import pytest
import torch

from bc_robot.core.pose import quat_to_rot6d, rot6d_to_matrix
from bc_robot.core.spec import NormStats
from bc_robot.learning.augment import YawAugment, isotropic_stats
from bc_robot.learning.config import load_config
from bc_robot.learning.dataset import Batch

STATE_KEYS = ('ee_position', 'ee_rot6d', 'gripper', 'sim_objects')


def _batch(n: int = 32, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        tcp = rng.uniform([0.3, -0.3, 0.02], [0.7, 0.3, 0.2])
        cube = rng.uniform([0.3, -0.3, 0.025], [0.7, 0.3, 0.025])
        goal = rng.uniform([0.3, -0.3], [0.7, 0.3])
        rows.append(np.concatenate([tcp, quat_to_rot6d(q), [rng.uniform()], cube - tcp,
                                    goal - cube[:2]]))
    state = torch.tensor(np.array(rows), dtype=torch.float32)[:, None]  # [B, 1, 15]
    actions = torch.cat([state[:, :, :9].repeat(1, 4, 1)
                         + 0.01 * torch.randn(n, 4, 9), torch.rand(n, 4, 1)], -1)
    return Batch({}, state, actions, torch.ones(n, 4, dtype=torch.bool), torch.ones(n),
                 state[:, -1, 10:].clone())


def _augment(max_deg: float = 180.0) -> YawAugment:
    return YawAugment(max_deg, STATE_KEYS, ('sim_objects',), 'ee_pose_rot6d_gripper')


def test_the_world_turns_together_and_heights_and_gripper_stay():
    batch = _batch()
    turned = _augment()(batch, torch.Generator().manual_seed(3))
    s, t = batch.state[:, 0], turned.state[:, 0]
    # heights, the gripper and the cube's height above the TCP do not turn
    for i in (2, 5, 8, 9, 12):
        torch.testing.assert_close(t[:, i], s[:, i])
    # each planar pair keeps its length; the TCP turned by some nonzero angle
    for o in (0, 3, 6, 10, 13):
        torch.testing.assert_close(t[:, o:o + 2].norm(dim=-1), s[:, o:o + 2].norm(dim=-1))
    angle = torch.atan2(t[:, 1], t[:, 0]) - torch.atan2(s[:, 1], s[:, 0])
    assert float(torch.remainder(angle, 2 * math.pi).std()) > 0.5  # per-sample yaws
    # the same angle for every pair of one sample: relative geometry survives
    for o in (3, 6, 10, 13):
        other = torch.atan2(t[:, o + 1], t[:, o]) - torch.atan2(s[:, o + 1], s[:, o])
        torch.testing.assert_close(torch.cos(other), torch.cos(angle), atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.sin(other), torch.sin(angle), atol=1e-4, rtol=0)
    # labels turn about the same axis: the label relative to the TCP turns with it
    rel_before = batch.actions[:, :, :2] - batch.state[:, :, :2]
    rel_after = turned.actions[:, :, :2] - turned.state[:, :, :2]
    torch.testing.assert_close(rel_after.norm(dim=-1), rel_before.norm(dim=-1))
    torch.testing.assert_close(turned.actions[..., 9], batch.actions[..., 9])
    # the orientation stays a rotation, turned about z by that angle
    for i in range(4):
        before = rot6d_to_matrix(s[i, 3:9].double().numpy())
        after = rot6d_to_matrix(t[i, 3:9].double().numpy())
        a = float(angle[i])
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                       [0, 0, 1]])
        np.testing.assert_allclose(after, rz @ before, atol=1e-5)
    # the auxiliary targets turn as the state's sim_objects do
    torch.testing.assert_close(turned.auxiliary, t[:, 10:])


def test_the_angle_stays_inside_its_bound():
    batch = _batch(256)
    turned = _augment(10.0)(batch, torch.Generator().manual_seed(0))
    s, t = batch.state[:, 0, :2], turned.state[:, 0, :2]
    angle = torch.atan2(s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0], (s * t).sum(-1))
    assert float(angle.abs().max()) <= math.radians(10.0) + 1e-5
    assert float(angle.abs().max()) > math.radians(8.0)


def test_isotropic_statistics_are_those_of_the_turned_data():
    batch = _batch(4000)
    rows = batch.state[:, 0].double().numpy()
    stats = NormStats(tuple(rows.mean(0)), tuple(rows.std(0)),
                      tuple(np.percentile(rows, 1, 0)), tuple(np.percentile(rows, 99, 0)))
    iso = isotropic_stats(stats, (0, 3, 6, 10, 13))
    turned = _augment()(batch, torch.Generator().manual_seed(1)).state[:, 0].double().numpy()
    for o in (0, 10):
        np.testing.assert_allclose(iso.mean[o:o + 2], 0.0)
        np.testing.assert_allclose(iso.std[o:o + 2], turned[:, o:o + 2].std(0), rtol=0.08)
        assert iso.low[o] == iso.low[o + 1] == -iso.high[o] < 0
    assert iso.mean[2] == stats.mean[2] and iso.std[9] == stats.std[9]  # z and gripper


def test_what_cannot_turn_is_refused_naming_it():
    gt = {'data.cameras': [], 'data.state_keys': list(STATE_KEYS), 'train.augment_yaw_deg': 180}
    assert load_config(None, gt).train.augment_yaw_deg == 180
    with pytest.raises(ValueError, match=r"cameras \['front'\] would not see turn"):
        load_config(None, {**gt, 'data.cameras': [{'name': 'front', 'height': 8, 'width': 8}]})
    with pytest.raises(ValueError, match=r"data.state_keys: state key 'joint_positions' cannot"):
        load_config(None, {**gt, 'data.state_keys': ['ee_position', 'joint_positions']})
    with pytest.raises(ValueError, match=r"cannot turn actions of 'ee_pose_quat_gripper'"):
        load_config(None, {**gt, 'data.action_representation': 'ee_pose_quat_gripper'})
    with pytest.raises(ValueError, match=r'train.augment_yaw_deg = 200 must be'):
        load_config(None, {**gt, 'train.augment_yaw_deg': 200})
