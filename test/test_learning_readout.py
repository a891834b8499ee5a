"""model.object_readout: a keypoint-per-object detector learns where objects are on the table
from images, reads layouts it never saw, and feeds its estimate to the policy as the
`sim_objects` state inside the exported graph (images and proprioception in, nothing else)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bc_robot.core.spec import CameraSpec, NormStats, load_spec
from bc_robot.learning.config import ModelConfig, load_config
from bc_robot.learning.export import export_policy
from bc_robot.learning.frames import objects_from_table, objects_on_table
from bc_robot.learning.nets import ObjectReadout
from bc_robot.learning.policy import BCPolicy, PolicyArch

H, W = 24, 32
CUBE, GOAL, TABLE = (200, 30, 30), (40, 200, 60), (204, 184, 148)


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A table with a red and a green 3×3 square; their table x, y follow from their pixel
    rows and columns through a fixed affine map (a camera looking down)."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = TABLE
    places = []
    for colour in (CUBE, GOAL):
        row, col = rng.integers(1, H - 4), rng.integers(1, W - 4)
        image[row:row + 3, col:col + 3] = colour
        places.append((0.3 + 0.01 * (row + 1), -0.15 + 0.01 * (col + 1)))
    return image, np.array(places, np.float32).reshape(-1)


def _images(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0


def test_the_readout_places_objects_in_layouts_it_never_saw():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = [_scene(rng) for _ in range(120)]
    new = [_scene(rng) for _ in range(40)]
    images, places = map(np.stack, zip(*train))
    mean, std = places.mean(0), places.std(0)
    readout = ObjectReadout(H, W, objects=2)
    optimizer = torch.optim.Adam(readout.parameters(), 3e-3)
    x, y = _images(images), torch.from_numpy((places - mean) / std)
    for step in range(800):
        batch = torch.from_numpy(rng.integers(0, len(train), 32))
        loss = torch.nn.functional.smooth_l1_loss(readout(x[batch]), y[batch], beta=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    new_images, new_places = map(np.stack, zip(*new))
    with torch.no_grad():
        read = readout(_images(new_images)).numpy() * std + mean
    error = np.linalg.norm((read - new_places).reshape(-1, 2, 2), axis=-1)  # [scene, object]
    # a pixel is 1 cm here: both objects placed to under a pixel in new layouts
    assert np.median(error) < 0.008 and np.percentile(error, 90) < 0.015


def test_table_positions_and_the_sim_objects_state_convert_both_ways():
    tcp = torch.tensor([[0.45, -0.1, 0.12]])
    sim_objects = torch.tensor([[0.08, 0.03, -0.095, -0.05, 0.12]])
    table = objects_on_table(sim_objects, tcp)
    torch.testing.assert_close(table, torch.tensor([[0.53, -0.07, 0.025, 0.48, 0.05]]))
    torch.testing.assert_close(objects_from_table(table, tcp), sim_objects)


def _stats() -> dict[str, NormStats]:
    mean = (0.5, 0.0, 0.2, 1, 0, 0, 0, -1, 0, 0.5)
    std = (0.1, 0.1, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.4)
    return {'action': NormStats(mean=mean, std=std), 'state': NormStats(mean=mean, std=std),
            'auxiliary': NormStats(mean=(0.05, 0.0, -0.1, 0.0, 0.1), std=(0.1,) * 5),
            'objects': NormStats(mean=(0.5, 0.0, 0.025, 0.5, 0.05), std=(0.1,) * 5)}


def _readout_policy() -> BCPolicy:
    torch.manual_seed(0)
    arch = PolicyArch(head='flow', cameras=(CameraSpec('front', H, W),),
                      state_keys=('ee_position', 'ee_rot6d', 'gripper'), history=1,
                      chunk_length=4, control_rate_hz=20.0,
                      action_representation='ee_pose_rot6d_gripper',
                      auxiliary_keys=('sim_objects',),
                      model=ModelConfig(channels=(8,), keypoints=4, d_model=32, state_hidden=16,
                                        relative_position=True,
                                        frame_only_keys=('ee_position',),
                                        object_readout='front'))
    return BCPolicy(arch, _stats())


def _observation(seed: int) -> dict[str, np.ndarray]:
    image, _places = _scene(np.random.default_rng(seed))
    state = np.array([[0.45, -0.1, 0.12, 1, 0, 0, 0, -1, 0, 0.5]], np.float32)
    return {'image.front': image[None], 'state': state}


def test_the_policy_reads_its_own_estimate_and_trains_on_the_recorded_objects():
    policy = _readout_policy().eval()
    obs = _observation(1)
    images, state = {'front': torch.from_numpy(obs['image.front'])[None]}, \
        torch.from_numpy(obs['state'])[None]
    estimate = policy.read_objects(images, state)
    assert estimate.shape == (1, 5)
    # the cube's height is the table's (the statistics' mean), relative to the TCP
    assert estimate[0, 2].item() == pytest.approx(0.025 - 0.12, abs=1e-6)
    own, _ = policy.encode(images, state)
    given, _ = policy.encode(images, state, estimate)
    recorded, _ = policy.encode(images, state, estimate + 0.05)
    torch.testing.assert_close(own, given)
    assert (own - recorded).abs().max() > 1e-4
    torch.testing.assert_close(policy.predict_auxiliary(images, state), estimate)


def test_the_exported_graph_needs_only_the_image_and_the_state(tmp_path):
    policy = _readout_policy()
    result = export_policy(policy, _stats(), tmp_path / 'm', [_observation(s) for s in (2, 3)])
    assert result.max_error <= 1e-3
    spec = load_spec(tmp_path / 'm')
    assert [c.name for c in spec.cameras] == ['front'] and spec.state_keys == (
        'ee_position', 'ee_rot6d', 'gripper')
    assert {i.name for i in spec.inputs} == {'image.front', 'state', 'prefix', 'prefix_weights',
                                             'noise'}


@pytest.mark.parametrize('overrides, problem', [
    ({'model.object_readout': 'side'}, "camera 'side' is not in data.cameras"),
    ({'data.auxiliary_keys': []}, r'data.auxiliary_keys: \[sim_objects\], got \[\]'),
    ({'data.state_keys': ['ee_rot6d', 'gripper']}, 'needs ee_position in data.state_keys'),
    ({'data.history': 2}, 'needs data.history: 1, got 2'),
])
def test_object_readout_settings_are_checked(overrides, problem):
    settings = {'data.cameras': [{'name': 'front', 'height': H, 'width': W}],
                'data.auxiliary_keys': ['sim_objects'], 'model.object_readout': 'front',
                **overrides}
    with pytest.raises(ValueError, match=problem):
        load_config(None, settings)
    with pytest.raises(ValueError, match='model.object_readout must be a camera name'):
        ModelConfig(object_readout=3)


def test_the_readout_learns_from_the_first_readout_samples_of_a_batch():
    """train.readout_samples: the readout's gradient comes from that many samples of each
    (shuffled) batch; the head still learns from all of them."""
    policy = _readout_policy()
    policy.readout_samples = 2
    observations = [_observation(s) for s in range(4)]
    images = torch.from_numpy(np.stack([o['image.front'] for o in observations]))
    state = torch.from_numpy(np.stack([o['state'] for o in observations]))
    actions = torch.zeros(4, 4, 10)
    valid, weight = torch.ones(4, 4, dtype=torch.bool), torch.ones(4)
    auxiliary = torch.tensor([[0.05, 0.0, -0.1, 0.0, 0.1]]).repeat(4, 1)

    def gradients(frames: torch.Tensor) -> list[torch.Tensor]:
        policy.zero_grad()
        policy({'front': frames}, state, actions, valid, weight, auxiliary).backward()
        return [p.grad.clone() for p in policy.readout.parameters()]

    changed = images.clone()
    changed[2:] = 255 - changed[2:]
    for a, b in zip(gradients(images), gradients(changed)):
        torch.testing.assert_close(a, b)
    changed[1] = 255 - changed[1]
    assert any((a - b).abs().max() > 0 for a, b in zip(gradients(images), gradients(changed)))
