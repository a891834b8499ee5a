"""The learning-rate schedule ends its decay where the run ends, whichever budget that is."""
from __future__ import annotations

import pytest

from bc_robot.learning.schedule import FINAL_FACTOR, BudgetSchedule


def test_step_budget_warms_up_then_decays_to_the_final_factor():
    schedule = BudgetSchedule(steps=100, warmup_steps=10)
    assert schedule.factor(0, schedule.progress(0, 0.0)) == pytest.approx(0.1)
    assert schedule.factor(9, schedule.progress(9, 0.0)) == pytest.approx(1.0)
    assert schedule.factor(10, schedule.progress(10, 0.0)) == pytest.approx(1.0)
    middle = schedule.factor(55, schedule.progress(55, 0.0))
    assert middle == pytest.approx(FINAL_FACTOR + (1 - FINAL_FACTOR) / 2)
    assert schedule.factor(100, schedule.progress(100, 0.0)) == pytest.approx(FINAL_FACTOR)
    factors = [schedule.factor(s, schedule.progress(s, 0.0)) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_a_time_budget_that_ends_the_run_early_still_anneals_it():
    # 6 000 steps planned; the CPU budget runs out at step 3 000.
    schedule = BudgetSchedule(steps=6000, warmup_steps=100, max_cpu_minutes=20)
    half_spent = schedule.time_spent(wall_s=1e6, cpu_s=600)
    assert half_spent == pytest.approx(0.5)  # wall time has no budget: it does not count
    assert schedule.progress(1000, half_spent) == pytest.approx(0.5)
    spent = schedule.time_spent(wall_s=0, cpu_s=1200)
    assert spent == pytest.approx(1.0)
    assert schedule.factor(3000, schedule.progress(3000, spent)) == pytest.approx(FINAL_FACTOR)
    # Steps still count when they are further along than the time.
    assert schedule.progress(5400, 0.2) == pytest.approx(0.9)


def test_the_further_spent_of_wall_and_cpu_budgets_counts():
    schedule = BudgetSchedule(steps=10, max_minutes=10, max_cpu_minutes=30)
    assert schedule.time_spent(wall_s=300, cpu_s=600) == pytest.approx(0.5)
    assert schedule.time_spent(wall_s=60, cpu_s=1440) == pytest.approx(0.8)
    assert BudgetSchedule(steps=10).time_spent(wall_s=1e9, cpu_s=1e9) == 0.0


@pytest.mark.parametrize('kwargs, message', [
    ({'steps': 0}, 'steps must be at least 1, got 0'),
    ({'steps': 5, 'warmup_steps': -1}, 'warmup_steps must be at least 0, got -1'),
    ({'steps': 5, 'max_cpu_minutes': float('nan')}, 'max_cpu_minutes must be a finite'),
    ({'steps': 5, 'max_minutes': -2.0}, 'got -2.0'),
])
def test_bad_settings_are_refused_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BudgetSchedule(**kwargs)
