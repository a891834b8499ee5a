"""Recording demonstrations slower than real time: `record_demos(real_time_factor=0.5)`
runs the record graph (real processes, DDS) on the sim's /clock, so every camera frame the
sim renders reaches the bag, stamped in sim time."""
from __future__ import annotations

import numpy as np
import pytest

from bc_robot.orchestrate.record import record_demos
from bc_robot.orchestrate.ros import RosLink
from bc_robot.recording.reader import read_episode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAMERA_RATE_HZ = 15.0  # config/sim_arm.yaml


def _stamp_s(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def test_half_speed_recording_is_on_sim_time_and_keeps_every_camera_frame(tmp_path):
    link = RosLink()
    try:
        result = record_demos(link, tmp_path / 'work', 'record', 1, tmp_path / 'demos',
                              task='reach', episode_timeout=10.0, sim={'cameras': ['front']},
                              real_time_factor=0.5)
    finally:
        link.close()
    assert result.expert['successes'] >= 1, result.expert
    log = result.log_path.read_text(errors='replace')
    assert 'rtf 0.5' in log, log[-2000:]

    episode = read_episode(result.episodes[-1], topics=['/camera/front/image_raw',
                                                        '/joint_states'])
    frames = episode.require('/camera/front/image_raw').messages
    stamps = np.array([_stamp_s(m) for m in frames])
    # sim time starts at 0 with the sim; wall-clock ROS time would be ~1.7e9 s
    assert stamps[-1] < 1e5, stamps[-1]
    joints = np.array([_stamp_s(m) for m in episode.require('/joint_states').messages])
    assert joints[-1] < 1e5, joints[-1]
    span = stamps[-1] - stamps[0]
    assert span > 1.0, span
    expected = span * CAMERA_RATE_HZ + 1
    assert len(frames) >= 0.95 * expected, (len(frames), expected, np.diff(stamps).max())
    assert np.all(np.diff(stamps) > 0)


def test_real_time_factor_out_of_range_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match='real_time_factor 0.0 must be in'):
        record_demos(None, tmp_path, 'record', 1, tmp_path / 'demos', real_time_factor=0.0)
