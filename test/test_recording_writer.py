"""The episode writer without ROS: raw CDR bytes from the rosbags serializer in, bags read
back with the independent `mcap` reader (+ mcap_ros2 decoder) out."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader as RosbagsReader
from rosbags.typesys import Stores, get_typestore

from bc_robot.recording.writer import BagWriter, EpisodeWriter, WriterConfig

TS = get_typestore(Stores.ROS2_KILTED)
FAST = WriterConfig(flush_period=0.1, min_free_bytes=0)


def cdr(msgtype: str, **fields) -> bytes:
    return bytes(TS.serialize_cdr(TS.types[msgtype](**fields), msgtype))


def string_msg(text: str) -> bytes:
    return cdr('std_msgs/msg/String', data=text)


def image_msg(n: int, size: int = 32) -> bytes:
    import numpy as np
    Header, Time = TS.types['std_msgs/msg/Header'], TS.types['builtin_interfaces/msg/Time']
    return cdr('sensor_msgs/msg/Image', header=Header(stamp=Time(sec=n, nanosec=0), frame_id='cam'),
               height=size, width=size, encoding='rgb8', is_bigendian=0, step=size * 3,
               data=np.full(size * size * 3, n % 256, dtype=np.uint8))


def read_mcap(path: Path):
    """[(topic, log_time, raw bytes, decoded)] with the mcap reader, as Foxglove would."""
    with open(path, 'rb') as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        return [(channel.topic, message.log_time, message.data, decoded)
                for _schema, channel, message, decoded in reader.iter_decoded_messages()]


def wait_done(writer: EpisodeWriter, grace: float = 0.0) -> None:
    writer.request_stop(grace)
    assert writer.join(10)


def test_roundtrip_raw_bytes_unchanged_and_counted(tmp_path):
    writer = EpisodeWriter(tmp_path / 'ep', FAST)
    writer.start()
    assert writer.wait_open(5) is None
    sent = []
    for i in range(30):
        items = [('/chatter', 'std_msgs/msg/String', string_msg(f'm{i}')),
                 ('/camera/front/image_raw', 'sensor_msgs/msg/Image', image_msg(i)),
                 ('/bc/intervention', 'std_msgs/msg/Bool', cdr('std_msgs/msg/Bool', data=i > 15))]
        for topic, msgtype, data in items:
            stamp = 1_000_000_000 + i * 10_000_000
            assert writer.offer(topic, msgtype, data, stamp)
            sent.append((topic, stamp, data))
    wait_done(writer)
    report = writer.report()
    assert report['ok'] and report['finished']
    for topic in ('/chatter', '/camera/front/image_raw', '/bc/intervention'):
        assert report['topics'][topic] == {**report['topics'][topic], 'received': 30,
                                           'written': 30, 'dropped': 0}
    got = read_mcap(tmp_path / 'ep' / 'ep.mcap')
    assert sorted((t, s, d) for t, s, d, _ in got) == sorted(sent)   # bytes identical
    decoded = {t: [m for tt, _, _, m in got if tt == t] for t in ('/chatter', '/bc/intervention')}
    assert [m.data for m in decoded['/chatter']] == [f'm{i}' for i in range(30)]
    assert [m.data for m in decoded['/bc/intervention']].count(True) == 14
    # rosbag2 directory: metadata.yaml is there and a rosbag2 reader opens it
    with RosbagsReader(tmp_path / 'ep') as bag:
        assert bag.message_count == 90
        assert {c.topic: c.msgtype for c in bag.connections}['/camera/front/image_raw'] == \
            'sensor_msgs/msg/Image'


def test_file_is_a_complete_mcap_between_checkpoints(tmp_path):
    """What a kill would leave: readable with everything up to the last checkpoint."""
    writer = EpisodeWriter(tmp_path / 'ep', FAST)
    writer.start()
    writer.wait_open(5)
    for i in range(20):
        writer.offer('/chatter', 'std_msgs/msg/String', string_msg(f'm{i}'), i + 1)
    time.sleep(0.5)                 # several checkpoints pass
    mid = read_mcap(tmp_path / 'ep' / 'ep.mcap')
    assert len(mid) == 20
    assert (tmp_path / 'ep' / 'metadata.yaml').exists()
    wait_done(writer)


KILL_SCRIPT = textwrap.dedent('''
    import sys, time
    from rosbags.typesys import Stores, get_typestore
    from bc_robot.recording.writer import EpisodeWriter, WriterConfig
    ts = get_typestore(Stores.ROS2_KILTED)
    String = ts.types['std_msgs/msg/String']
    writer = EpisodeWriter(sys.argv[1], WriterConfig(flush_period=0.5, min_free_bytes=0))
    writer.start(); writer.wait_open(5)
    i = 0
    while True:
        now = time.time_ns()
        data = bytes(ts.serialize_cdr(String(data=str(i)), 'std_msgs/msg/String'))
        writer.offer('/seq', 'std_msgs/msg/String', data, now)
        writer.offer('/blob', 'std_msgs/msg/String',
                     bytes(ts.serialize_cdr(String(data='x' * 20000), 'std_msgs/msg/String')), now)
        if i == 0:
            print('writing', flush=True)
        i += 1
        time.sleep(0.002)
''')


def test_sigkill_leaves_a_readable_bag_missing_at_most_one_second(tmp_path):
    bag = tmp_path / 'killed'
    process = subprocess.Popen([sys.executable, '-c', KILL_SCRIPT, str(bag)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == 'writing'
    time.sleep(2.5)
    killed_at = time.time_ns()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    messages = [(t, s, m.data) for t, s, _, m in read_mcap(bag / 'killed.mcap') if t == '/seq']
    assert len(messages) > 100
    sequence = [int(d) for _, _, d in messages]
    assert sequence == list(range(len(sequence)))          # no gap, no duplicate
    assert (killed_at - messages[-1][1]) / 1e9 <= 1.0       # lost at most the last second
    with RosbagsReader(bag) as reader:                      # metadata.yaml from a checkpoint
        assert reader.message_count > 0


def test_full_queue_drops_are_counted_never_blocking(tmp_path):
    config = WriterConfig(flush_period=0.1, min_free_bytes=0, max_queue_bytes=64 * 1024)
    writer = EpisodeWriter(tmp_path / 'ep', config)
    # not started yet: nothing drains the queue, so it must fill and drop, never block
    payload = string_msg('x' * 10_000)
    started = time.monotonic()
    results = [writer.offer('/big', 'std_msgs/msg/String', payload, i + 1) for i in range(20)]
    assert time.monotonic() - started < 0.5
    assert results.count(True) == 6 and results.count(False) == 14
    writer.start()
    wait_done(writer)
    counts = writer.report()['topics']['/big']
    assert (counts['received'], counts['written'], counts['dropped']) == (20, 6, 14)
    assert len(read_mcap(tmp_path / 'ep' / 'ep.mcap')) == 6


def test_existing_directory_is_never_overwritten(tmp_path):
    existing = tmp_path / 'ep'
    existing.mkdir()
    (existing / 'precious.txt').write_text('keep me')
    writer = EpisodeWriter(existing, FAST)
    writer.start()
    error = writer.wait_open(5)
    assert error and 'already exists' in error and 'never overwritten' in error
    assert not writer.offer('/chatter', 'std_msgs/msg/String', string_msg('x'), 1)
    writer.join(5)
    assert (existing / 'precious.txt').read_text() == 'keep me'
    assert sorted(p.name for p in existing.iterdir()) == ['precious.txt']
    with pytest.raises(FileExistsError):
        BagWriter(existing)


def test_unknown_message_type_drops_that_topic_only(tmp_path):
    writer = EpisodeWriter(tmp_path / 'ep', FAST)
    writer.start()
    writer.offer('/custom', 'my_pkg/msg/Thing', b'\x00\x01\x00\x00', 1)
    writer.offer('/chatter', 'std_msgs/msg/String', string_msg('ok'), 2)
    wait_done(writer)
    topics = writer.report()['topics']
    assert topics['/custom']['dropped'] == 1 and topics['/chatter']['written'] == 1
    assert [t for t, *_ in read_mcap(tmp_path / 'ep' / 'ep.mcap')] == ['/chatter']


def test_stop_grace_keeps_in_flight_messages_then_refuses(tmp_path):
    writer = EpisodeWriter(tmp_path / 'ep', FAST)
    writer.start()
    writer.wait_open(5)
    writer.request_stop(grace=0.3)
    assert writer.offer('/chatter', 'std_msgs/msg/String', string_msg('in flight'), 1)
    assert writer.join(5)
    assert not writer.offer('/chatter', 'std_msgs/msg/String', string_msg('late'), 2)
    assert writer.report()['topics']['/chatter']['received'] == 1
    assert [m.data for *_, m in read_mcap(tmp_path / 'ep' / 'ep.mcap')] == ['in flight']


def test_not_enough_free_space_refuses_to_start_with_figures(tmp_path):
    writer = EpisodeWriter(tmp_path / 'ep', WriterConfig(min_free_bytes=2 ** 62))
    writer.start()
    error = writer.wait_open(5)
    assert error and 'MB free' in error and str(tmp_path) in error
    writer.join(5)
    assert not (tmp_path / 'ep').exists()


@pytest.fixture
def tiny_fs(tmpfs):
    """A 1 MiB tmpfs (full disk)."""
    return tmpfs('size=1m')


def test_full_disk_stops_recording_with_a_clear_report_and_a_readable_bag(tiny_fs):
    errors = []
    writer = EpisodeWriter(tiny_fs / 'ep', FAST, on_error=lambda w, m: errors.append(m))
    writer.start()
    assert writer.wait_open(5) is None
    payload = string_msg('y' * 50_000)
    for i in range(60):                      # 3 MB into 1 MiB
        writer.offer('/blob', 'std_msgs/msg/String', payload, i + 1)
        time.sleep(0.02)
    writer.request_stop()
    assert writer.join(10)
    assert writer.error and 'No space left on device' in writer.error
    assert str(tiny_fs / 'ep') in writer.error and errors == [writer.error]
    counts = writer.report()['topics']['/blob']
    assert counts['received'] == 60
    assert counts['written'] + counts['dropped'] == 60 and counts['dropped'] > 0
    from bc_robot.recording.writer import mcap_is_complete
    assert mcap_is_complete(tiny_fs / 'ep' / 'ep.mcap')   # footer + summary restored
    kept = read_mcap(tiny_fs / 'ep' / 'ep.mcap')     # still opens: last checkpoint kept
    assert 0 < len(kept) <= counts['written']
    assert [s for _, s, _, _ in kept] == list(range(1, len(kept) + 1))


def test_read_only_directory_gives_a_clear_error(tiny_fs):
    subprocess.run(['mount', '-o', 'remount,ro', str(tiny_fs)], check=True)
    writer = EpisodeWriter(tiny_fs / 'ep', FAST)
    writer.start()
    error = writer.wait_open(5)
    assert error and 'Read-only file system' in error and 'cannot start recording' in error
    writer.join(5)


@pytest.mark.parametrize('cut', ['in_summary', 'mid_chunk', 'tail_overwritten'])
def test_repair_salvages_every_complete_chunk_of_a_torn_bag(tmp_path, cut):
    """A kill during the checkpoint write leaves no footer; repair_bag makes it readable."""
    from bc_robot.recording.writer import mcap_is_complete, repair_bag
    bag = BagWriter(tmp_path / 'ep')
    bag.open()
    for i in range(50):
        bag.write('/chatter', 'std_msgs/msg/String', string_msg(f'a{i}'), i + 1)
    bag.checkpoint()
    path = tmp_path / 'ep' / 'ep.mcap'
    good_end = path.stat().st_size
    for i in range(50, 100):
        bag.write('/chatter', 'std_msgs/msg/String', string_msg(f'b{i}'), i + 1)
    bag.checkpoint()
    bag.abort()
    data = path.read_bytes()
    if cut == 'in_summary':          # second chunk complete, summary cut short
        torn = data[:-40]
        expected = 100
    elif cut == 'mid_chunk':         # killed while the second chunk was being written
        torn = data[:good_end - 60]
        expected = 50
    else:                            # partial new chunk over the old summary, old bytes after
        torn = data[:good_end - 200] + b'\x06' + b'\xff' * 8 + data[good_end - 191:good_end]
        expected = 50
    path.write_bytes(torn)
    assert not mcap_is_complete(path)
    report = repair_bag(tmp_path / 'ep')
    assert report['repaired'] and report['messages'] == expected
    got = [m.data for *_, m in read_mcap(path)]
    assert got[:50] == [f'a{i}' for i in range(50)] and len(got) == expected
    assert (tmp_path / 'ep' / 'ep.mcap.damaged').read_bytes() == torn
    with RosbagsReader(tmp_path / 'ep') as reader:
        assert reader.message_count == expected
    assert repair_bag(tmp_path / 'ep') == {'bag': str(tmp_path / 'ep'), 'repaired': False}
