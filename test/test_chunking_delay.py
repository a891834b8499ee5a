"""The inference-delay estimator: a high percentile over a sliding window that evicts the
warm-up samples and recovers from a one-off spike (the failure of LeRobot PR #4223, whose
running maximum kept the first slow inference forever)."""
from __future__ import annotations

import math

import pytest

from bc_robot.core.delay import (DelayEstimator, DelayEstimatorConfig, SeriesRecorder,
                                 summarize)


def test_warmup_samples_count_only_until_a_real_one_exists():
    est = DelayEstimator(DelayEstimatorConfig(window=10, percentile=90, warmup=2, initial_s=0.05))
    assert est.estimate() == 0.05
    est.add(2.0)   # first session run: allocation, JIT
    est.add(1.2)
    assert 1.2 <= est.estimate() <= 2.0   # better than nothing while it is all there is
    est.add(0.1)
    assert est.estimate() == pytest.approx(0.1)
    assert est.estimate_steps(0.05) == 2


def test_one_spike_leaves_the_estimate_after_one_window():
    est = DelayEstimator(DelayEstimatorConfig(window=10, percentile=90, warmup=0))
    for _ in range(10):
        est.add(0.1)
    est.add(3.0)  # a one-off GC pause or page fault
    assert est.estimate() > 0.1
    for _ in range(9):
        est.add(0.1)
        assert est.estimate() > 0.1   # still in the window
    est.add(0.1)
    assert est.estimate() == pytest.approx(0.1)  # gone: a running max would say 3.0 forever


def test_default_percentile_ignores_a_single_spike_altogether():
    est = DelayEstimator()
    for _ in range(40):
        est.add(0.12)
    est.add(5.0)
    assert est.estimate() == pytest.approx(0.12)


def test_estimate_follows_a_lasting_change_in_delay():
    est = DelayEstimator(DelayEstimatorConfig(window=20, percentile=90, warmup=0))
    for _ in range(20):
        est.add(0.05)
    for _ in range(5):
        est.add(0.30)   # model now takes 300 ms (e.g. inject_delay_ms raised)
    assert est.estimate() >= 0.25
    assert est.estimate_steps(0.05) >= 5


@pytest.mark.parametrize('value', [-0.1, math.nan, math.inf])
def test_bad_samples_are_refused(value):
    with pytest.raises(ValueError, match='delay sample'):
        DelayEstimator().add(value)


@pytest.mark.parametrize('kwargs, name', [(dict(window=0), 'window'),
                                          (dict(percentile=101), 'percentile'),
                                          (dict(warmup=-1), 'warmup'),
                                          (dict(initial_s=-1.0), 'initial_s')])
def test_config_refuses_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DelayEstimatorConfig(**kwargs)


def test_summaries_and_series():
    assert summarize([])['count'] == 0
    s = summarize(range(1, 101))
    assert s['median'] == pytest.approx(50.5) and s['max'] == 100 and 99 <= s['p99'] <= 100
    rec = SeriesRecorder(limit=3)
    for v in range(5):
        rec.add('x', v)
    assert rec.values('x') == [2, 3, 4] and rec.last('x', 1) == [4]
    assert rec.summary()['x']['count'] == 3
