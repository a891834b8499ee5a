"""Cube nudges (`bc_robot.sim.disturbance`): the schedule, its refusals, and the physics of a
nudge in the world the sim_arm node runs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bc_robot.sim.disturbance import NudgeConfig, nudge_schedule
from bc_robot.sim.settings import SIM_ARM_SCHEMA, sim_config_from_params
from bc_robot.sim.tasks import TaskConfig
from bc_robot.sim.world import SimConfig, SimWorld


def test_schedule_is_drawn_from_the_scene_seed_within_the_ranges():
    config = NudgeConfig(count=3, window=(2.0, 6.0), speed=(0.1, 0.5))
    first = nudge_schedule(config, 1007)
    assert first == nudge_schedule(config, 1007)          # a replayed scene replays its nudges
    assert first != nudge_schedule(config, 1008)
    assert len(first) == 3
    assert [n.time for n in first] == sorted(n.time for n in first)
    for nudge in first:
        assert 2.0 <= nudge.time <= 6.0
        assert 0.1 <= math.hypot(*nudge.velocity) <= 0.5
    assert nudge_schedule(NudgeConfig(), 1007) == []      # off by default
    directions = [math.atan2(n.velocity[1], n.velocity[0])
                  for seed in range(40) for n in nudge_schedule(config, seed)]
    assert np.ptp(directions) > 5.0                        # any direction, not one side


@pytest.mark.parametrize('kwargs, message', [
    ({'count': -1}, 'nudge count must be an int in \\[0, 10\\], got -1'),
    ({'count': 1.5}, 'got 1.5'),
    ({'window': (8.0, 1.0)}, 'nudge window .* got \\[8.0, 1.0\\]'),
    ({'speed': (float('nan'), 0.3)}, 'nudge speed .* got \\[nan, 0.3\\]'),
    ({'speed': (0.1,)}, 'nudge speed must be \\[low, high\\]'),
])
def test_bad_nudge_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NudgeConfig(**kwargs)


def _cube_after(world: SimWorld, seconds: float) -> np.ndarray:
    world.step(int(round(seconds / world.timestep)))
    return world.arm.cube_position()


def test_a_nudge_slides_the_cube_at_its_time_and_a_reset_replays_it():
    """The arm holds at home, far from the cube: only the nudge can move it."""
    nudges = NudgeConfig(count=1, window=(0.5, 0.5), speed=(0.3, 0.3))
    world = SimWorld(SimConfig(seed=1003, nudges=nudges))
    velocity = np.array(world.pending_nudges[0].velocity)
    start = world.arm.cube_position()
    before = _cube_after(world, 0.45)
    assert np.linalg.norm(before[:2] - start[:2]) < 1e-4
    after = _cube_after(world, 1.5)
    moved = after[:2] - start[:2]
    assert 0.004 < np.linalg.norm(moved) < 0.05
    assert np.dot(moved, velocity) / (np.linalg.norm(moved) * np.linalg.norm(velocity)) > 0.9
    assert abs(after[2] - start[2]) < 1e-3                 # slid, still on the table
    assert world.pending_nudges == []

    world.set_seed(1003)
    world.reset()
    assert np.allclose(_cube_after(world, 1.95)[:2], after[:2], atol=1e-4)


def test_without_nudges_or_on_reach_the_cube_stays_put():
    for config in (SimConfig(seed=1003),
                   SimConfig(task=TaskConfig(name='reach'), seed=3,
                             nudges=NudgeConfig(count=2, window=(0.1, 0.2)))):
        world = SimWorld(config)
        assert world.pending_nudges == []
        start = world.arm.cube_position()
        assert np.linalg.norm(_cube_after(world, 0.5)[:2] - start[:2]) < 1e-4


def test_sim_arm_parameters_carry_the_nudges():
    values = {**SIM_ARM_SCHEMA.defaults(), 'nudge_count': 2, 'nudge_window': [1.0, 3.0],
              'nudge_speed': [0.25, 0.35]}
    assert sim_config_from_params(values).nudges == NudgeConfig(2, (1.0, 3.0), (0.25, 0.35))
    assert sim_config_from_params(SIM_ARM_SCHEMA.defaults()).nudges.count == 0
    with pytest.raises(ValueError, match='nudge window'):
        sim_config_from_params({**values, 'nudge_window': [3.0, 1.0]})
