"""Reading recorded episodes back (bc_robot.recording.reader): messages per topic with
timestamps, decoded; bags left behind by a crash; truncated files and missing topics named."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from bc_robot.learning.synthetic import SyntheticEpisode, write_episode
from bc_robot.recording.reader import (MCAP_MAGIC, bag_topics, iter_messages, read_episode,
                                       read_episode_metadata)


@pytest.fixture(scope='module')
def episode(tmp_path_factory) -> Path:
    return write_episode(tmp_path_factory.mktemp('bags') / 'ep',
                         SyntheticEpisode(duration_s=2.0, writer='recorder'))


def _record_offsets(data: bytes) -> list[tuple[int, int, int]]:
    """(opcode, offset, length) of each top-level MCAP record."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        opcode = data[pos]
        (length,) = struct.unpack_from('<Q', data, pos + 1)
        out.append((opcode, pos, length))
        pos += 9 + length
        if opcode == 0x02:  # footer
            break
    return out


def _copy_episode(src: Path, dst: Path, mcap_bytes: bytes | None = None,
                  keep_metadata: bool = True) -> Path:
    dst.mkdir(parents=True)
    mcap = next(src.glob('*.mcap'))
    (dst / mcap.name).write_bytes(mcap.read_bytes() if mcap_bytes is None else mcap_bytes)
    if keep_metadata:
        (dst / 'metadata.yaml').write_text((src / 'metadata.yaml').read_text())
    (dst / 'episode.json').write_text((src / 'episode.json').read_text())
    return dst


def test_reads_every_topic_with_timestamps_and_decoded_messages(episode):
    ep = read_episode(episode)
    assert ep.complete and not ep.warnings
    counts = {t: len(m) for t, m in ep.topics.items()}
    # 2 s at the synthetic rates: cameras 30 Hz, proprioception 100 Hz, teleop 50 Hz.
    assert counts['/camera/front/image_raw'] == 60
    assert counts['/joint_states'] == 200
    assert counts['/bc/teleop/label'] == 100
    front = ep.topics['/camera/front/image_raw']
    assert front.msgtype == 'sensor_msgs/msg/Image'
    assert np.all(np.diff(front.log_times) > 0)
    assert front.rate_hz() == pytest.approx(30.0, rel=0.01)
    image = front.messages[0]
    assert (image.height, image.width, image.encoding) == (48, 64, 'rgb8')
    assert len(image.data) == 48 * 64 * 3
    pose = ep.topics['/current_pose'].messages[0]
    assert pose.header.frame_id == 'base' and pose.pose.position.x == pytest.approx(0.45)
    assert ep.metadata['mode'] == 'demo' and read_episode_metadata(episode) == ep.metadata


def test_topic_filter_and_streaming_iteration(episode):
    ep = read_episode(episode, topics=['/current_pose'])
    assert set(ep.topics) == {'/current_pose'}
    streamed = list(iter_messages(episode, topics=['/bc/intervention', '/gripper/target']))
    assert {m.topic for m in streamed} == {'/gripper/target'}
    assert all(m.msg is not None for m in streamed)
    info = bag_topics(episode)
    assert info['/joint_states'].count == 200 and info['/joint_states'].msgtype == \
        'sensor_msgs/msg/JointState'


def test_bag_written_by_the_mcap_ros2_writer_is_read(tmp_path):
    """A different writer (mcap's own, zstd chunks) reads the same way."""
    from mcap_ros2.writer import Writer
    folder = tmp_path / 'other'
    folder.mkdir()
    with open(folder / 'other_0.mcap', 'wb') as handle:
        writer = Writer(handle)
        schema = writer.register_msgdef('std_msgs/msg/Float64', 'float64 data')
        for i in range(500):
            writer.write_message('/value', schema, {'data': float(i)}, log_time=i * 10_000_000,
                                 publish_time=i * 10_000_000)
        writer.finish()
    ep = read_episode(folder)
    values = [m.data for m in ep.topics['/value'].messages]
    assert values == [float(i) for i in range(500)]
    assert ep.topics['/value'].rate_hz() == pytest.approx(100.0)
    assert not ep.complete  # no metadata.yaml: read from the files, flagged


def test_missing_metadata_yaml_is_tolerated(episode, tmp_path):
    copy = _copy_episode(episode, tmp_path / 'no_meta', keep_metadata=False)
    ep = read_episode(copy)
    assert len(ep.topics['/joint_states']) == 200
    assert not ep.complete and 'metadata.yaml is missing' in ep.warnings[0]


def test_missing_summary_after_a_crash_is_tolerated(episode, tmp_path):
    """Data ends on a record boundary with no summary or footer: every message is read."""
    data = next(episode.glob('*.mcap')).read_bytes()
    data_end = next(off for op, off, _len in _record_offsets(data) if op == 0x0F)
    copy = _copy_episode(episode, tmp_path / 'no_summary', data[:data_end],
                         keep_metadata=False)
    ep = read_episode(copy)
    assert len(ep.topics['/camera/front/image_raw']) == 60
    assert not ep.complete
    assert any('summary' in w for w in ep.warnings)


def test_recorder_killed_between_checkpoints_reads_to_the_last_checkpoint(tmp_path):
    from rosbags.typesys import Stores, get_typestore

    from bc_robot.recording.writer import BagWriter
    store = get_typestore(Stores.ROS2_KILTED)
    Float64 = store.types['std_msgs/msg/Float64']
    bag = BagWriter(tmp_path / 'killed')
    bag.open()
    for i in range(50):
        bag.write('/x', 'std_msgs/msg/Float64', store.serialize_cdr(Float64(data=float(i)),
                                                                   'std_msgs/msg/Float64'),
                  i * 1000)
    bag.checkpoint()
    for i in range(50, 80):
        bag.write('/x', 'std_msgs/msg/Float64', store.serialize_cdr(Float64(data=float(i)),
                                                                   'std_msgs/msg/Float64'),
                  i * 1000)
    bag.abort()  # what a SIGKILL leaves: the file as of the last checkpoint
    ep = read_episode(tmp_path / 'killed')
    assert [m.data for m in ep.topics['/x'].messages] == [float(i) for i in range(50)]


def test_truncated_file_is_refused_naming_the_file(episode, tmp_path):
    mcap = next(episode.glob('*.mcap'))
    data = mcap.read_bytes()
    chunk = next((off, length) for op, off, length in _record_offsets(data) if op == 0x06)
    cut = chunk[0] + 9 + chunk[1] // 2
    copy = _copy_episode(episode, tmp_path / 'cut', data[:cut], keep_metadata=False)
    with pytest.raises(ValueError) as info:
        read_episode(copy)
    text = str(info.value)
    assert str(copy / mcap.name) in text and 'truncated' in text and 'Chunk' in text
    # Inspection tools may keep what is readable.
    partial = read_episode(copy, allow_truncated=True)
    assert 'truncated' in partial.warnings[0]


def test_fewer_messages_than_metadata_declares_names_the_topic(episode, tmp_path):
    """metadata.yaml present but the data stops early (a copy cut short)."""
    data = next(episode.glob('*.mcap')).read_bytes()
    records = _record_offsets(data)
    chunks = [(off, length) for op, off, length in records if op == 0x06]
    assert len(chunks) >= 2, 'the synthetic episode must span chunks to cut between them'
    cut = chunks[-1][0]
    copy = _copy_episode(episode, tmp_path / 'short', data[:cut])
    with pytest.raises(ValueError, match=r'topic /\S+ holds \d+ messages but .* declares'):
        read_episode(copy)


def test_missing_topic_names_file_and_topic(episode):
    ep = read_episode(episode)
    with pytest.raises(ValueError) as info:
        ep.require('/camera/side/image_raw')
    assert '/camera/side/image_raw' in str(info.value) and '.mcap' in str(info.value)


@pytest.mark.parametrize('content, message', [
    (b'', 'empty'),
    (b'not an mcap file at all', 'not an MCAP file'),
    (MCAP_MAGIC + b'\x05' + struct.pack('<Q', 10_000), 'truncated'),
])
def test_damaged_files_are_refused(tmp_path, content, message):
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'bad_0.mcap').write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_episode(folder)


def test_folder_without_a_bag_is_refused(tmp_path):
    with pytest.raises(ValueError, match='no MCAP file'):
        read_episode(tmp_path)
    with pytest.raises(ValueError, match='does not exist'):
        read_episode(tmp_path / 'nope')
