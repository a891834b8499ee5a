"""episode.json: complete, atomic, refuses nonsense."""
import json

import numpy as np
import pytest

import bc_robot
from bc_robot.recording.episode import (EpisodeMetadata, latency_stats, model_info,
                                        read_episode_json, write_episode_json)


def test_metadata_roundtrip_has_every_required_field(tmp_path):
    meta = EpisodeMetadata('push_20260101-000000_001', task='push', operator='ana', mode='dagger',
                           status='saved', success=True, success_source='operator',
                           start_time=1_700_000_000.0, end_time=1_700_000_012.5,
                           interventions={'count': 2, 'durations': [1.0, 0.5]},
                           model={'name': 'm', 'sha256': 'ab' * 32},
                           policy_latency={'target_age_ms': latency_stats([10.0, 20.0, 30.0])},
                           recording={'topics': {'/joint_states': {'received': 5, 'written': 5,
                                                                   'dropped': 0}}})
    write_episode_json(tmp_path, meta)
    data = read_episode_json(tmp_path)
    for key in ('task', 'operator', 'success', 'interventions', 'model', 'policy_latency',
                'bc_robot_version', 'start_time', 'end_time', 'start_iso', 'recording'):
        assert key in data
    assert data['duration'] == pytest.approx(12.5)
    assert data['bc_robot_version'] == bc_robot.__version__
    assert data['start_iso'].startswith('2023-11-14T22:13:20')
    assert data['policy_latency']['target_age_ms']['p50'] == pytest.approx(20.0)
    assert not list(tmp_path.glob('.*.tmp'))              # atomic: no temp file left


def test_numpy_values_serialize_and_nan_is_refused(tmp_path):
    meta = EpisodeMetadata('ep', notes={'x': np.float32(1.5), 'v': np.arange(3)})
    write_episode_json(tmp_path, meta)
    assert json.loads((tmp_path / 'episode.json').read_text())['notes'] == {'x': 1.5, 'v': [0, 1, 2]}
    with pytest.raises(ValueError):
        write_episode_json(tmp_path, EpisodeMetadata('ep', notes={'bad': float('nan')}))
    # the failed write left the previous complete file in place
    assert read_episode_json(tmp_path)['notes']['x'] == 1.5


@pytest.mark.parametrize('kwargs, text', [({'name': ''}, 'name'), ({'name': 'a/b'}, 'name'),
                                          ({'name': 'ok', 'status': 'lost'}, 'status')])
def test_bad_metadata_is_refused(kwargs, text):
    with pytest.raises(ValueError, match=text):
        EpisodeMetadata(**kwargs)


def test_reading_a_non_episode_names_the_path(tmp_path):
    with pytest.raises(ValueError, match='episode.json does not exist'):
        read_episode_json(tmp_path)
    (tmp_path / 'episode.json').write_text('{broken')
    with pytest.raises(ValueError, match='not valid JSON'):
        read_episode_json(tmp_path)


def test_latency_stats_ignore_non_finite_and_handle_empty():
    assert latency_stats([]) == {'count': 0}
    stats = latency_stats([1.0, float('inf'), 3.0])
    assert stats['count'] == 2 and stats['max'] == 3.0


def test_model_info_hashes_the_onnx_file(tmp_path):
    from bc_robot.core.spec import sha256_file
    from bc_robot.runtime.testing_models import make_spec, write_model
    model_dir = write_model(tmp_path / 'model', make_spec(name='tiny_policy'))
    info = model_info(model_dir)
    assert info['name'] == 'tiny_policy'
    assert info['sha256'] == sha256_file(model_dir / 'policy.onnx') == info['spec_sha256']
    with pytest.raises(ValueError, match='policy spec not found'):
        model_info(tmp_path / 'nowhere')


def test_recover_interrupted_repairs_and_marks_only_dead_recordings(tmp_path):
    import os
    import time as _time

    from rosbags.typesys import Stores, get_typestore

    from bc_robot.recording.episode import recover_interrupted
    from bc_robot.recording.writer import BagWriter, mcap_is_complete
    ts = get_typestore(Stores.ROS2_KILTED)
    data = bytes(ts.serialize_cdr(ts.types['std_msgs/msg/String'](data='x'), 'std_msgs/msg/String'))
    for name, status in (('killed', 'recording'), ('live', 'recording'), ('done', 'saved')):
        bag = BagWriter(tmp_path / name)
        bag.open()
        for i in range(10):
            bag.write('/t', 'std_msgs/msg/String', data, i + 1)
        bag.checkpoint()
        bag.abort()
        write_episode_json(tmp_path / name, EpisodeMetadata(name, status=status))
    killed = tmp_path / 'killed' / 'killed.mcap'
    killed.write_bytes(killed.read_bytes()[:-30])            # torn footer
    old = _time.time() - 120
    for name in ('killed', 'done'):
        os.utime(tmp_path / name / f'{name}.mcap', (old, old))
    recovered = recover_interrupted(tmp_path)
    assert [name for name, _ in recovered] == ['killed']
    assert recovered[0][1]['repaired'] and mcap_is_complete(killed)
    assert read_episode_json(tmp_path / 'killed')['status'] == 'interrupted'
    assert read_episode_json(tmp_path / 'live')['status'] == 'recording'   # still being written
    assert read_episode_json(tmp_path / 'done')['status'] == 'saved'
