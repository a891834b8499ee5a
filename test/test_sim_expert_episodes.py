"""The scripted expert solves `push` (direct mode) on 50 seeded episodes, in-process: the same
MuJoCo physics, controller and expert the nodes run, without rendering or wall-clock pacing,
so it runs much faster than real time."""
from __future__ import annotations

import numpy as np
import pytest

from bc_robot.sim.expert import (CorrectionConfig, ExpertConfig, Observation, PushGeometry,
                                 ScriptedExpert)
from bc_robot.sim.runner import RunnerConfig, run_episode, run_episodes, summarize
from bc_robot.sim.tasks import TaskConfig
from bc_robot.sim.world import SimConfig, SimWorld


@pytest.mark.slow
def test_expert_direct_mode_solves_95_percent_of_50_seeded_push_episodes_both_sides():
    world = SimWorld(SimConfig(seed=1000))
    results = run_episodes(world, 50, runner_config=RunnerConfig(timeout=30.0), expert_seed=5)
    summary = summarize(results)
    failures = [r for r in results if not r.success]
    assert summary['success_rate'] >= 0.95, failures
    assert summary['sides'].get('left', 0) >= 10 and summary['sides'].get('right', 0) >= 10, \
        summary['sides']
    # The seeds really were 50 different scenes.
    assert len({r.seed for r in results}) == 50


def test_expert_solves_reach():
    world = SimWorld(SimConfig(task=TaskConfig(name='reach'), seed=3))
    results = run_episodes(world, 3, runner_config=RunnerConfig(timeout=10.0))
    assert all(r.success for r in results), results


def test_expert_straight_approach_solves_push_without_a_re_approach():
    """side_offset 0: the paddle comes down behind the cube on the push line instead of
    beside it, so the push starts with no sideways slide (the corner a policy cuts)."""
    config = ExpertConfig(side_offset=0.0, side_back=0.09, behind_offset=0.08)
    world = SimWorld(SimConfig(seed=2000))
    results = run_episodes(world, 6, config, RunnerConfig(timeout=30.0), expert_seed=3)
    assert all(r.success for r in results), results
    assert all(r.realigns == 0 for r in results), results


def test_expert_with_varied_plans_solves_push_on_many_paths():
    """plan_variation and lateral_variation: each episode draws its own waypoints and where
    across the line its push starts, and every one still works."""
    config = ExpertConfig(plan_variation=0.3, lateral_variation=0.015)
    expert = ScriptedExpert(config, np.random.default_rng(4))
    world = SimWorld(SimConfig(seed=2100))
    plans, laterals, results = [], [], []
    for _ in range(6):
        results.append(run_episode(world, expert, RunnerConfig(timeout=30.0), side=1))
        plans.append([expert.plan.side_offset, expert.plan.side_back, expert.plan.behind_offset])
        laterals.append(expert.lateral)
    assert all(r.success for r in results), results
    assert max(map(abs, laterals)) <= 0.015 and min(laterals) < 0 < max(laterals), laterals
    plans = np.array(plans)
    nominal = np.array([config.side_offset, config.side_back, config.behind_offset])
    assert np.all(plans >= 0.7 * nominal - 1e-12) and np.all(plans <= 1.3 * nominal + 1e-12)
    assert np.all(plans.std(axis=0) > 0.05 * nominal), plans  # each factor drawn on its own


def test_plan_variation_zero_draws_nothing_and_is_reproducible():
    """Off, the expert's random stream is untouched (recordings without it replay the same);
    on, a seed gives the same plans."""
    base = ExpertConfig()
    rng = np.random.default_rng(7)
    assert base.varied_plan(rng) is base
    assert rng.uniform() == np.random.default_rng(7).uniform()
    varied = ExpertConfig(plan_variation=0.2)
    a, b = varied.varied_plan(np.random.default_rng(1)), varied.varied_plan(
        np.random.default_rng(1))
    assert a == b and a.plan_variation == 0.0 and a.behind_offset != base.behind_offset
    geo = PushGeometry(base, np.array([0.5, 0.0]), np.array([0.5, 0.15]), 1, lateral=0.01)
    assert geo.behind[:2] == pytest.approx([0.49, -base.behind_offset])  # left of +y is -x


@pytest.mark.parametrize('kwargs, named', [
    (dict(side_offset=0.0, side_back=0.03), 'put the paddle down on the cube'),
    (dict(behind_offset=0.03), 'starts the push inside the cube'),
    (dict(behind_offset=0.05, plan_variation=0.3), r'× 0.7: plan_variation 0.3\) starts'),
    (dict(plan_variation=1.0), 'plan_variation must be < 1'),
    (dict(lateral_variation=0.02), 'lateral_variation 0.02 would start pushes'),
])
def test_expert_approach_inside_the_cube_is_refused_with_the_values(kwargs, named):
    with pytest.raises(ValueError, match=named) as info:
        ExpertConfig(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(info.value)


def test_the_experts_own_pushes_never_run_off_centre():
    """The correction monitor's off-centre rule must not fire on the pushes it corrects
    towards: on every tick of the expert's own episodes (both sides) the paddle moves the
    cube within `push_lateral` of its centre line."""
    limit = CorrectionConfig().push_lateral
    world = SimWorld(SimConfig(seed=2200))
    expert = ScriptedExpert(rng=np.random.default_rng(6))
    for side in (1, -1, 1, -1):
        offsets = []
        result = run_episode(world, expert, RunnerConfig(timeout=30.0), side, watch=lambda pose,
                             state: offsets.append(expert.push_offset(
                                 Observation.from_pose(pose, state), state['time'])))
        assert result.success
        assert any(o > 0.0 for o in offsets)  # it does push: the rule watched the push itself
        assert max(offsets) <= limit, (side, max(offsets))
