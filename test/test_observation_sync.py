"""Stamp synchronization: proprioception interpolated to the camera stamp, skew and age
gates with counted reasons, multi-camera matching, the assembler and the history stack."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from bc_robot.core.pose import quat_angle, rotvec_to_quat
from bc_robot.core.sync import (ObservationAssembler, ObservationHistory,
                                ObservationSynchronizer, StampedSeries, SyncConfig,
                                history_indices)

IMG = np.zeros((4, 4, 3), np.uint8)


def pose_vec(x: float, yaw: float) -> list[float]:
    return [x, 0.0, 0.3, *rotvec_to_quat(np.array([0.0, 0.0, yaw]))]


def test_series_interpolates_linearly_and_slerps_orientation():
    series = StampedSeries(pose=True)
    series.add(10.0, pose_vec(0.4, 0.0))
    series.add(10.01, pose_vec(0.5, 0.2))
    value, skew = series.sample(10.0025, max_skew=0.02)
    assert value[0] == pytest.approx(0.425)
    assert quat_angle(value[3:7], rotvec_to_quat(np.array([0, 0, 0.05]))) < 1e-9
    assert skew == pytest.approx(0.0025)


def test_series_holds_the_newest_within_skew_and_refuses_beyond():
    series = StampedSeries()
    series.add(1.0, [1.0])
    assert series.sample(1.03, 0.04)[0][0] == 1.0
    assert series.sample(1.05, 0.04) is None
    series.add(1.2, [2.0])  # a 200 ms hole: a stamp in its middle is not bridged
    assert series.sample(1.1, 0.04) is None


def test_series_refuses_non_finite_samples():
    with pytest.raises(ValueError, match='non-finite'):
        StampedSeries().add(1.0, [math.nan])


def make_sync(cameras=('front',), inputs=('joints', 'pose'), **kwargs):
    return ObservationSynchronizer(cameras, inputs, SyncConfig(**{'max_skew_s': 0.02,
                                                                  'max_age_s': 0.2,
                                                                  'wait_s': 0.03, **kwargs}))


def test_frame_waits_for_proprioception_after_its_stamp_then_interpolates():
    sync = make_sync()
    sync.add_proprio('joints', 0.990, [0.0] * 7 + [1.0])
    sync.add_proprio('pose', 0.990, pose_vec(0.40, 0.0))
    sync.add_frame('front', 1.000, IMG)
    assert sync.poll(now=1.005) == []   # nothing after the stamp yet: wait
    sync.add_proprio('joints', 1.010, [0.2] * 7 + [0.0])
    sync.add_proprio('pose', 1.010, pose_vec(0.60, 0.0))
    (obs,) = sync.poll(now=1.012)
    assert obs.stamp == 1.000
    assert np.allclose(obs.joints, [0.1] * 7 + [0.5])
    assert obs.pose.position[0] == pytest.approx(0.5)
    assert obs.skews['joints'] == pytest.approx(0.01)


def test_after_waiting_the_newest_sample_within_skew_is_held():
    sync = make_sync()
    sync.add_proprio('joints', 0.995, [0.0] * 8)
    sync.add_proprio('pose', 0.995, pose_vec(0.4, 0.0))
    sync.add_frame('front', 1.000, IMG)
    assert sync.poll(now=1.01) == []
    (obs,) = sync.poll(now=1.04)
    assert obs.skews['pose'] == pytest.approx(0.005)


def test_skewed_and_stale_frames_are_dropped_with_their_reason():
    sync = make_sync()
    sync.add_proprio('joints', 0.90, [0.0] * 8)
    sync.add_proprio('pose', 0.90, pose_vec(0.4, 0.0))
    sync.add_frame('front', 1.000, IMG)
    assert sync.poll(now=1.001) == [] and not sync.dropped  # waits for a newer sample
    assert sync.poll(now=1.05) == []
    assert sync.dropped['skew_joints'] == 1
    sync.add_frame('front', 1.1, IMG)
    assert sync.poll(now=1.5) == []
    assert sync.dropped['stale'] == 1
    assert sync.published == 0


def test_second_camera_nearest_frame_within_skew():
    sync = make_sync(cameras=('front', 'wrist'), inputs=())
    wrist_a, wrist_b = np.full((4, 4, 3), 1, np.uint8), np.full((4, 4, 3), 2, np.uint8)
    sync.add_frame('wrist', 0.970, wrist_a)  # 30 ms before: outside max_skew
    sync.add_frame('front', 1.000, IMG)
    assert sync.poll(now=1.001) == []       # the matching wrist frame may still come
    sync.add_frame('wrist', 1.004, wrist_b)
    (obs,) = sync.poll(now=1.006)
    assert obs.images['wrist'][0, 0, 0] == 2 and obs.skews['wrist'] == pytest.approx(0.004)
    sync.add_frame('front', 1.100, IMG)
    assert sync.poll(now=1.101) == []
    assert sync.poll(now=1.2) == []
    assert sync.dropped['skew_wrist'] == 1


def test_a_late_frame_still_waits_for_the_other_camera_of_its_instant():
    # Rendering and transport make frames arrive ~60 ms after their stamp, one camera after
    # the other: the wait for the second camera counts from arrival, not from the stamp
    # (counting from the stamp dropped two of three frames of a two-camera sim).
    sync = make_sync(cameras=('front', 'wrist'), inputs=())
    sync.add_frame('front', 1.000, IMG)
    assert sync.poll(now=1.060) == [] and not sync.dropped
    sync.add_frame('wrist', 1.000, IMG)
    (obs,) = sync.poll(now=1.075)
    assert obs.stamp == 1.0 and obs.skews['wrist'] == 0.0
    sync.add_frame('front', 1.066, IMG)
    assert sync.poll(now=1.130) == []
    assert sync.poll(now=1.171) == [] and sync.dropped['skew_wrist'] == 1  # never came


def test_state_only_policy_uses_joint_states_as_reference():
    sync = make_sync(cameras=(), inputs=('joints',))
    sync.add_proprio('joints', 1.0, [0.0] * 8)
    (obs,) = sync.poll(now=1.001)
    assert obs.stamp == 1.0 and obs.images == {}
    sync.add_proprio('joints', 0.5, [0.0] * 8)   # out of order
    assert sync.poll(now=1.01) == [] and sync.dropped['out_of_order'] == 1


def test_assembler_joins_parts_with_identical_stamps():
    asm = ObservationAssembler(['image.front', 'state'])
    assert asm.add('state', 100, np.zeros(3)) is None
    assert asm.add('image.front', 99, IMG) is None
    stamp, parts = asm.add('image.front', 100, IMG)
    assert stamp == 100 and set(parts) == {'image.front', 'state'}
    assert asm.incomplete == 1   # the 99 ns image never got its state
    with pytest.raises(ValueError, match='unexpected'):
        asm.add('image.wrist', 1, IMG)


def test_history_picks_one_observation_per_control_period_and_pads_the_start():
    stamps = [0.0, 0.03, 0.06, 0.09, 0.12, 0.15]   # a 33 Hz camera, 20 Hz policy
    assert history_indices(stamps, 3, 0.05) == [2, 3, 5]
    assert history_indices(stamps[:1], 3, 0.05) == [0, 0, 0]


def test_history_waits_for_a_newer_observation():
    hist = ObservationHistory(2, 0.05)
    hist.add(1.0, {'state': np.array([1.0], np.float32)})
    stamp, stacked = hist.wait_newer(None, timeout=0.1)
    assert stamp == 1.0 and stacked['state'].shape == (2, 1)
    assert hist.wait_newer(1.0, timeout=0.05) is None
    threading.Timer(0.05, hist.add, args=(1.05, {'state': np.array([2.0], np.float32)})).start()
    stamp, stacked = hist.wait_newer(1.0, timeout=2.0)
    assert stamp == 1.05 and stacked['state'][:, 0].tolist() == [1.0, 2.0]
    hist.add(1.01, {'state': np.array([9.0], np.float32)})  # older: ignored
    assert hist.latest_stamp() == 1.05
    hist.close()
    assert hist.wait_newer(5.0, timeout=1.0) is None


@pytest.mark.parametrize('kwargs, name', [(dict(max_skew_s=-1), 'max_skew_s'),
                                          (dict(max_age_s=0), 'max_age_s'),
                                          (dict(buffer=1), 'buffer')])
def test_sync_config_refuses_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SyncConfig(**kwargs)


def test_split_seconds_carries_at_whole_seconds():
    from bc_robot.core.stamps import split_seconds
    assert split_seconds(float(np.nextafter(2.0, 0.0))) == (2, 0)
    assert split_seconds(1.0009999999) == (1, 1_000_000)
    assert split_seconds(0.0) == (0, 0)
