"""DART noise: bounded, smooth, zero at each handover, label untouched."""
import numpy as np
import pytest

from bc_robot.core.dart import DartConfig, DartNoise
from bc_robot.core.pose import Pose, quat_angle

HOME = Pose(np.array([0.45, 0.0, 0.30]), np.array([1.0, 0.0, 0.0, 0.0]))


def test_noise_stays_within_bounds_and_changes_slowly():
    cfg = DartConfig(enabled=True, sigma_position=0.02, sigma_rotation=0.1, max_position=0.01,
                     max_rotation=0.05, max_rate_position=0.05, max_rate_rotation=0.2, seed=3)
    noise = DartNoise(cfg)
    dt = 0.02
    previous = HOME
    offsets = []
    for _ in range(3000):                     # 60 s at 50 Hz
        noise.step(dt)
        executed = noise.apply(HOME)
        offsets.append(np.linalg.norm(executed.position - HOME.position))
        assert offsets[-1] <= 0.01 + 1e-12
        assert quat_angle(executed.orientation, HOME.orientation) <= 0.05 + 1e-9
        assert np.linalg.norm(executed.position - previous.position) <= 0.05 * dt + 1e-12
        assert quat_angle(executed.orientation, previous.orientation) <= 0.2 * dt + 1e-9
        previous = executed
    assert max(offsets) > 0.005                # it really perturbs
    assert np.std(offsets) > 0.0


def test_reset_returns_to_zero_and_disabled_is_identity():
    noise = DartNoise(DartConfig(enabled=True, seed=1))
    for _ in range(50):
        noise.step(0.02)
    assert np.linalg.norm(noise.position) > 0
    noise.reset()
    assert noise.apply(HOME).position.tolist() == HOME.position.tolist()
    off = DartNoise(DartConfig(enabled=False))
    off.step(0.02)
    assert off.apply(HOME) is HOME


def test_same_seed_same_noise():
    a, b = DartNoise(DartConfig(enabled=True, seed=7)), DartNoise(DartConfig(enabled=True, seed=7))
    for _ in range(20):
        a.step(0.02)
        b.step(0.02)
    assert a.position.tolist() == b.position.tolist()


@pytest.mark.parametrize('kwargs, text', [({'max_position': 0.2}, 'safe maximum'),
                                          ({'time_constant': 0.0}, 'time_constant'),
                                          ({'sigma_position': -1.0}, 'sigma_position')])
def test_config_refuses_bad_values(kwargs, text):
    with pytest.raises(ValueError, match=text):
        DartConfig(**kwargs)
