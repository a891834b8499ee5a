"""rosbag2 (MCAP storage) episode writer: raw serialized CDR bytes in, a bag `ros2 bag`,
Foxglove and the `mcap` reader open out — even after the process was SIGKILLed.

Three layers:
- `CheckpointMcapWriter`: rosbags' MCAP storage, but chunks are assembled in memory and at
  each checkpoint the new chunks *and a complete summary + footer* go to disk in one
  write, starting where the previous summary began. Between checkpoints the file on disk
  is therefore always a complete, indexed MCAP; a kill loses at most the data since the
  last checkpoint (`flush_period`, 0.5 s by default). A failed write (full disk) restores
  the previous summary so the bag stays readable up to the last checkpoint.
- `BagWriter`: a rosbag2 directory (metadata.yaml rewritten atomically at each checkpoint),
  connections added on a topic's first message, message definitions from the rosbags
  typestore of the running ROS distro. Synchronous; used by the thread below and tests.
- `EpisodeWriter`: the dedicated writer thread behind a bounded (by bytes) queue. `offer()`
  never blocks: the control path never waits on disk. Every message is counted per topic
  (received / written / dropped); a write error or a full disk stops this episode's
  recording with a clear report (`error`) while the caller carries on.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.rosbag2.errors import WriterError
from rosbags.rosbag2.storage_mcap import (McapWriter, write_channel, write_record, write_schema,
                                          write_string, write_uint16, write_uint32, write_uint64)
from rosbags.typesys import Stores, get_typestore

LOG = logging.getLogger('bc_robot.recording')

DEFAULT_DISTRO = 'kilted'   # the PyPI ROS wheels this project pins
_INFINITE = QosTime(0, 0)   # rosbag2 reads 0/0 as "default" (infinite) durations


def typestore_for(distro: str | None = None):
    """The rosbags typestore matching the ROS distro (ROS_DISTRO, else kilted)."""
    name = (distro or os.environ.get('ROS_DISTRO') or DEFAULT_DISTRO).strip().lower()
    try:
        return get_typestore(Stores[f'ROS2_{name.upper()}'])
    except KeyError:
        known = sorted(s.name[5:].lower() for s in Stores if s.name.startswith('ROS2_'))
        raise ValueError(f'ROS distro {name!r} has no rosbags typestore; known: {known}') from None


def bag_version_for(distro: str | None = None) -> int:
    """rosbag2 metadata version: 9 from Kilted on, 8 for Jazzy/Humble readers."""
    name = (distro or os.environ.get('ROS_DISTRO') or DEFAULT_DISTRO).strip().lower()
    return 9 if name in ('kilted', 'lyrical', 'rolling') else 8


def make_qos(reliable: bool, transient_local: bool, depth: int) -> Qos:
    """The offered QoS stored with a topic, so `ros2 bag play` republishes latched topics
    as latched."""
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               _INFINITE, _INFINITE, QosLiveliness.AUTOMATIC, _INFINITE, False)


class _OffsetBuffer(io.BytesIO):
    """In-memory bytes that report file offsets (`tell()` = where they will land)."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.base = base

    def tell(self) -> int:
        return self.base + super().tell()

    def close(self) -> None:  # rosbags closes its stream at the end of close(); keep the bytes
        pass


class CheckpointMcapWriter(McapWriter):
    """MCAP storage whose file is a complete, indexed MCAP after every checkpoint.

    rosbags assembles messages into 1 MiB chunks; here closed chunks collect in memory and
    `close()` (called for a checkpoint or the final close) writes them plus a fresh summary
    (schemas, channels, chunk indexes, statistics, footer) in one write at the offset where
    the previous summary began. Chunk index records are serialized once and kept, so a
    checkpoint costs O(new data), not O(episode length)."""

    fsync = False

    def __init__(self, path: Path, compression) -> None:
        super().__init__(path, compression)
        self._file = self.bio
        self._file.flush()
        self._tail_start = self._file.tell()   # where the current summary begins
        self._file_end = self._tail_start
        self._last_tail = b''
        self._index = io.BytesIO()             # chunk index records written so far
        self._indexed = 0
        self.final = True
        self.bio = _OffsetBuffer(self._tail_start)

    def has_pending_data(self) -> bool:
        return bool(self.chunk.msgs) or self.bio.tell() > self._tail_start

    def close(self, version: int, metadata: str) -> None:
        """Checkpoint (`final` False) or final close: pending chunks + summary to disk."""
        if self.chunk.bio.tell():
            self.close_chunk()
        buffer = self.bio
        data_end = buffer.tell()
        self._write_summary(buffer, metadata)
        blob = buffer.getvalue()
        self._write_at(self._tail_start, blob)
        self._last_tail = blob[data_end - self._tail_start:]
        self._tail_start = data_end
        self.bio = _OffsetBuffer(data_end)
        if self.final:
            self._file.close()

    def _write_summary(self, bio: _OffsetBuffer, metadata: str) -> None:
        """The summary section as rosbags' McapWriter.close writes it (same records)."""
        metadata_start = bio.tell()
        rec = io.BytesIO()
        write_string(rec, 'rosbag2')
        sub = io.BytesIO()
        write_string(sub, 'serialized_metadata')
        write_string(sub, metadata)
        write_uint32(rec, sub.tell())
        rec.write(sub.getbuffer())
        write_record(bio, 0x0C, rec)
        metadata_end = bio.tell()
        rec = io.BytesIO()
        write_uint32(rec, 0)
        write_record(bio, 0x0F, rec)                     # data end
        schema_start = bio.tell()
        for schema in self.schemas:
            write_schema(bio, schema)
        channel_start = bio.tell()
        for channel in self.channels:
            write_channel(bio, channel, self.schemas)
        chunk_start = bio.tell()
        for chunk in self.chunks[self._indexed:]:
            write_record(self._index, 0x08, chunk)
        self._indexed = len(self.chunks)
        bio.write(self._index.getbuffer())
        metadata_index_start = bio.tell()
        rec = io.BytesIO()
        write_uint64(rec, metadata_start)
        write_uint64(rec, metadata_end - metadata_start)
        write_string(rec, 'rosbag2')
        write_record(bio, 0x0D, rec)
        statistics_start = bio.tell()
        rec = io.BytesIO()
        write_uint64(rec, sum(self.channel_stats.values()))
        write_uint16(rec, len(self.schemas))
        write_uint32(rec, len(self.channels))
        write_uint32(rec, 0)   # attachments
        write_uint32(rec, 1)   # metadata records
        write_uint32(rec, len(self.chunks))
        write_uint64(rec, self.message_start_time)
        write_uint64(rec, self.message_end_time)
        write_uint32(rec, len(self.channel_stats) * 10)
        for cid, count in sorted(self.channel_stats.items()):
            write_uint16(rec, cid)
            write_uint64(rec, count)
        write_record(bio, 0x0B, rec)
        summary_offset_start = bio.tell()
        for opcode, start, end in ((0x03, schema_start, channel_start),
                                   (0x04, channel_start, chunk_start),
                                   (0x08, chunk_start, metadata_index_start),
                                   (0x0D, metadata_index_start, statistics_start),
                                   (0x0B, statistics_start, summary_offset_start)):
            if start != end or opcode in (0x0D, 0x0B):
                rec = io.BytesIO()
                rec.write(bytes([opcode]))
                write_uint64(rec, start)
                write_uint64(rec, end - start)
                write_record(bio, 0x0E, rec)
        rec = io.BytesIO()
        write_uint64(rec, schema_start)
        write_uint64(rec, summary_offset_start)
        write_uint32(rec, 0)
        write_record(bio, 0x02, rec)                     # footer
        bio.write(b'\x89MCAP\x30\r\n')

    def _write_at(self, offset: int, blob: bytes) -> None:
        """Unbuffered positional write (a failed write must not leave bytes in a Python
        buffer that a later flush would put somewhere)."""
        fd = self._file.fileno()
        try:
            _pwrite_all(fd, blob, offset)
            end = offset + len(blob)
            if end < self._file_end:
                os.ftruncate(fd, end)
            self._file_end = end
            if self.fsync:
                os.fsync(fd)
        except OSError:
            self._restore_tail()
            raise

    def _restore_tail(self) -> None:
        """After a failed write: cut back to the last good data and put the previous
        summary back (it fitted before, and truncating first frees the space)."""
        fd = self._file.fileno()
        try:
            os.ftruncate(fd, self._tail_start)
            _pwrite_all(fd, self._last_tail, self._tail_start)
            self._file_end = self._tail_start + len(self._last_tail)
        except OSError:
            LOG.exception('could not restore the MCAP summary of %s', self.path)

    def abort(self) -> None:
        """Give up: the file keeps everything up to the last checkpoint, readable."""
        try:
            self._file.close()
        except OSError:
            pass


def _yaml(data: Any) -> str:
    """libyaml-backed dump: rosbags' pure-Python YAML took ~70 ms per metadata.yaml, too
    slow to rewrite at every checkpoint on the writer thread."""
    return yaml.dump(data, Dumper=getattr(yaml, 'CSafeDumper', yaml.SafeDumper),
                     default_flow_style=False, sort_keys=True)


def _qos_dump(version: int, qos: list[Qos]) -> Any:
    profiles = [{
        'history': q.history.value if version < 9 else q.history.name.lower(), 'depth': q.depth,
        'reliability': q.reliability.value if version < 9 else q.reliability.name.lower(),
        'durability': q.durability.value if version < 9 else q.durability.name.lower(),
        'deadline': {'sec': q.deadline.sec, 'nsec': q.deadline.nsec},
        'lifespan': {'sec': q.lifespan.sec, 'nsec': q.lifespan.nsec},
        'liveliness': q.liveliness.value if version < 9 else q.liveliness.name.lower(),
        'liveliness_lease_duration': {'sec': q.liveliness_lease_duration.sec,
                                      'nsec': q.liveliness_lease_duration.nsec},
        'avoid_ros_namespace_conventions': q.avoid_ros_namespace_conventions} for q in qos]
    if version >= 9:
        return profiles
    return _yaml(profiles).strip() if profiles else ''   # v8 stores a YAML string


class _Rosbag2Writer(Writer):
    """rosbags' rosbag2 writer with `checkpoint()` and a fast metadata.yaml (same content
    as rosbags writes; no compression)."""

    STORAGE_PLUGINS = {StoragePlugin.MCAP: CheckpointMcapWriter}

    def checkpoint(self) -> bool:
        """Make everything written so far durable against a kill: chunks + summary in the
        MCAP, metadata.yaml rewritten atomically. False when nothing new was written."""
        storage = self.storage
        if storage is None or not storage.has_pending_data():
            return False
        storage.final = False
        try:
            self._finish(storage)
        finally:
            storage.final = True
        return True

    def close(self) -> None:
        storage = self.storage
        assert storage is not None
        self._finish(storage)
        self.storage = None

    def _finish(self, storage: CheckpointMcapWriter) -> None:
        duration = max(0, self.max_timestamp - self.min_timestamp)
        count = sum(self.counts.values())
        name = storage.path.name
        info = {
            'version': self.version, 'storage_identifier': 'mcap',
            'relative_file_paths': [name],
            'duration': {'nanoseconds': duration},
            'starting_time': {'nanoseconds_since_epoch': self.min_timestamp},
            'message_count': count,
            'topics_with_message_count': [
                {'topic_metadata': {
                    'name': c.topic, 'type': c.msgtype,
                    'serialization_format': c.ext.serialization_format,
                    'offered_qos_profiles': _qos_dump(self.version, c.ext.offered_qos_profiles),
                    'type_description_hash': c.digest},
                 'message_count': self.counts[c.id]} for c in self.connections],
            'compression_format': '', 'compression_mode': '',
            'files': [{'path': name,
                       'starting_time': {'nanoseconds_since_epoch': self.min_timestamp},
                       'duration': {'nanoseconds': duration}, 'message_count': count}],
            'custom_data': self.custom_data or None,
            'ros_distro': 'rosbags',
        }
        storage.close(self.version, _yaml(info).strip())
        tmp = self.metapath.with_suffix('.yaml.tmp')
        tmp.write_text(_yaml({'rosbag2_bagfile_information': info}), 'utf8')
        tmp.replace(self.metapath)


@dataclass
class TopicCounts:
    msgtype: str = ''
    received: int = 0
    written: int = 0
    dropped: int = 0
    bytes: int = 0            # bytes written

    def to_json(self) -> dict[str, Any]:
        return {'type': self.msgtype, 'received': self.received, 'written': self.written,
                'dropped': self.dropped, 'bytes': self.bytes}


class BagWriter:
    """One rosbag2 directory with MCAP storage. Never overwrites: an existing path is an
    error. Not thread-safe: one owner (the writer thread)."""

    def __init__(self, path: str | Path, distro: str | None = None, fsync: bool = False,
                 custom_data: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f'{self.path} already exists; recordings are never overwritten')
        self.typestore = typestore_for(distro)
        self._writer = _Rosbag2Writer(self.path, version=bag_version_for(distro),
                                      storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._fsync = fsync
        self._connections: dict[str, Any] = {}
        self.closed = False

    @property
    def mcap_path(self) -> Path:
        return self.path / f'{self.path.name}.mcap'

    def open(self) -> None:
        try:
            self._writer.open()
        except WriterError:
            raise FileExistsError(f'{self.path} already exists; recordings are never '
                                  f'overwritten') from None
        self._writer.storage.fsync = self._fsync

    def add_topic(self, topic: str, msgtype: str, qos: Qos | None = None,
                  msgdef: str | None = None, rihs01: str | None = None) -> None:
        """Register a topic; the definition comes from the typestore unless given."""
        if topic in self._connections:
            return
        if msgdef is None and msgtype not in self.typestore.fielddefs:
            raise ValueError(f'topic {topic!r}: message type {msgtype!r} is not in the '
                             f'rosbags typestore, so it cannot be recorded')
        if msgdef is not None and rihs01 is None:
            rihs01 = self.typestore.hash_rihs01(msgtype) \
                if msgtype in self.typestore.fielddefs else 'RIHS01_' + '0' * 64
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, msgdef=msgdef, rihs01=rihs01,
            offered_qos_profiles=[qos] if qos is not None else [])

    def write(self, topic: str, msgtype: str, data: bytes, stamp_ns: int,
              qos: Qos | None = None) -> None:
        """Raw CDR bytes, written unchanged."""
        if topic not in self._connections:
            self.add_topic(topic, msgtype, qos)
        self._writer.write(self._connections[topic], int(stamp_ns), data)

    def checkpoint(self) -> bool:
        return self._writer.checkpoint()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._writer.close()
            except BaseException:
                self._writer.abort()
                raise

    def abort(self) -> None:
        """Stop without a final summary; the file stays readable to the last checkpoint."""
        if not self.closed:
            self.closed = True
            self._writer.abort()


@dataclass(frozen=True)
class WriterConfig:
    max_queue_bytes: int = 256 * 1024 * 1024   # RAM buffer for disk stalls
    flush_period: float = 0.5                  # s between checkpoints (≤ loss on SIGKILL)
    min_free_bytes: int = 64 * 1024 * 1024     # stop cleanly before the disk is full
    fsync: bool = False                        # also survive power loss (slower disks)
    distro: str = ''

    def __post_init__(self) -> None:
        if not (isinstance(self.max_queue_bytes, int) and self.max_queue_bytes >= 1024):
            raise ValueError(f'max_queue_bytes = {self.max_queue_bytes!r} must be an int >= 1024')
        if not (0.05 <= self.flush_period <= 1.0):
            raise ValueError(f'flush_period = {self.flush_period!r} must be in [0.05, 1.0] s '
                             f'(a kill must lose at most one second)')
        if not (isinstance(self.min_free_bytes, int) and self.min_free_bytes >= 0):
            raise ValueError(f'min_free_bytes = {self.min_free_bytes!r} must be an int >= 0')


def name_native_thread(name: str) -> None:
    """Give the calling thread its name in the OS too (top -H, /proc/<pid>/task/*/comm),
    so the recorder's CPU can be attributed. Linux only; silently skipped elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)   # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


_STOP = object()


class EpisodeWriter:
    """A bag written by its own thread from a bounded queue of raw messages."""

    def __init__(self, bag_dir: str | Path, config: WriterConfig = WriterConfig(),
                 custom_data: dict[str, str] | None = None,
                 on_checkpoint: Callable[[EpisodeWriter], None] | None = None,
                 on_error: Callable[[EpisodeWriter, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(bag_dir)
        self.config = config
        self._custom_data = custom_data or {}
        self._on_checkpoint = on_checkpoint
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque = deque()
        self._queue_bytes = 0
        self._counts: dict[str, TopicCounts] = {}
        self._qos: dict[str, Qos] = {}
        self._stop_deadline: float | None = None
        self._accepting = True
        self.error: str | None = None
        self.opened = threading.Event()
        self.finished = threading.Event()
        self.bytes_written = 0
        self.peak_queue_bytes = 0
        self.checkpoints = 0
        self.first_stamp_ns: int | None = None
        self.last_stamp_ns: int | None = None
        self._thread = threading.Thread(target=self._run, name=f'bag-writer-{self.path.name}')

    # ---- caller side (any thread, never blocks on I/O) ----
    def start(self) -> None:
        self._thread.start()

    def wait_open(self, timeout: float) -> str | None:
        """Wait until the bag exists (or failed). Returns the error, None when open."""
        if not self.opened.wait(timeout):
            return f'{self.path}: the writer did not open the bag within {timeout:.1f} s'
        return self.error

    def set_qos(self, topic: str, qos: Qos) -> None:
        with self._lock:
            self._qos.setdefault(topic, qos)

    def offer(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> bool:
        """Queue one serialized message. False when it was dropped (counted) or arrived
        after the episode's stop grace (not part of the episode, not counted)."""
        size = len(data)
        with self._lock:
            if self._stop_deadline is not None and self._clock() >= self._stop_deadline:
                self._accepting = False
            if not self._accepting:
                return False
            counts = self._counts.get(topic)
            if counts is None:
                counts = self._counts[topic] = TopicCounts(msgtype)
            counts.received += 1
            if self.error is not None or self._queue_bytes + size > self.config.max_queue_bytes:
                counts.dropped += 1
                return False
            self._queue.append((topic, msgtype, data, stamp_ns))
            self._queue_bytes += size
            self.peak_queue_bytes = max(self.peak_queue_bytes, self._queue_bytes)
            self._wake.notify()
            return True

    def request_stop(self, grace: float = 0.0) -> None:
        """Keep accepting messages for `grace` seconds (in flight when stop was asked),
        then finalize the bag."""
        with self._lock:
            if self._stop_deadline is None:
                self._stop_deadline = self._clock() + max(0.0, grace)
            self._wake.notify()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def counts(self) -> dict[str, TopicCounts]:
        with self._lock:
            return {t: TopicCounts(**vars(c)) for t, c in self._counts.items()}

    @property
    def queue_bytes(self) -> int:
        return self._queue_bytes

    @property
    def recording(self) -> bool:
        return self._accepting and self.error is None and not self.finished.is_set()

    def report(self) -> dict[str, Any]:
        counts = self.counts()
        return {'bag': str(self.path), 'storage': 'mcap', 'ok': self.error is None,
                'error': self.error, 'finished': self.finished.is_set(),
                'bytes_written': self.bytes_written, 'checkpoints': self.checkpoints,
                'peak_queue_bytes': self.peak_queue_bytes,
                'flush_period': self.config.flush_period,
                'topics': {t: c.to_json() for t, c in sorted(counts.items())}}

    # ---- writer thread ----
    def _run(self) -> None:
        name_native_thread('bag-writer')
        bag = None
        try:
            free = free_bytes(self.path.parent)
            if free < self.config.min_free_bytes:
                raise OSError(f'only {free / 1e6:.1f} MB free on the disk of {self.path.parent}, '
                              f'need at least {self.config.min_free_bytes / 1e6:.1f} MB')
            bag = BagWriter(self.path, self.config.distro or None, self.config.fsync,
                            self._custom_data)
            bag.open()
        except (OSError, ValueError, WriterError) as exc:
            self._fail(f'cannot start recording into {self.path}: {exc}', None)
            self.opened.set()
            with self._lock:
                self._accepting = self._stop_deadline is None
            self.finished.set()
            return
        self.opened.set()
        next_checkpoint = self._clock() + self.config.flush_period
        try:
            while True:
                batch, stopping = self._take(next_checkpoint)
                for topic, msgtype, data, stamp_ns in batch:
                    self._write_one(bag, topic, msgtype, data, stamp_ns)
                    if self.error is not None:
                        break
                if self.error is not None:
                    break
                now = self._clock()
                if stopping:
                    break
                if now >= next_checkpoint:
                    self._checkpoint(bag)
                    next_checkpoint = now + self.config.flush_period
            if self.error is None:
                bag.close()
                self.checkpoints += 1
        except Exception as exc:  # noqa: BLE001 - any failure must end in a report, not a dead thread
            LOG.exception('bag writer failed')
            self._fail(f'recording into {self.path} failed: {exc}', bag)
        finally:
            with self._lock:
                # after a failure, messages keep being counted (as dropped) until stop
                self._accepting = self.error is not None and self._stop_deadline is None
                self._drop_queued()
            self.finished.set()

    def _take(self, next_checkpoint: float) -> tuple[list, bool]:
        with self._lock:
            while True:
                now = self._clock()
                stop_due = self._stop_deadline is not None and now >= self._stop_deadline
                if stop_due:
                    self._accepting = False
                if self._queue or stop_due or now >= next_checkpoint:
                    break
                wait_until = next_checkpoint if self._stop_deadline is None \
                    else min(next_checkpoint, self._stop_deadline)
                self._wake.wait(max(0.001, wait_until - now))
            batch = list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            return batch, stop_due   # nothing is accepted after the stop deadline

    def _write_one(self, bag: BagWriter, topic: str, msgtype: str, data: bytes,
                   stamp_ns: int) -> None:
        try:
            bag.write(topic, msgtype, data, stamp_ns, self._qos.get(topic))
        except ValueError as exc:   # a type the typestore lacks: that topic only
            with self._lock:
                self._counts[topic].dropped += 1
            LOG.error('%s', exc)
            return
        except OSError as exc:
            with self._lock:
                self._counts[topic].dropped += 1
            self._fail(self._disk_message(exc), bag)
            return
        with self._lock:
            counts = self._counts[topic]
            counts.written += 1
            counts.bytes += len(data)
        self.bytes_written += len(data)
        if self.first_stamp_ns is None:
            self.first_stamp_ns = stamp_ns
        self.last_stamp_ns = stamp_ns

    def _checkpoint(self, bag: BagWriter) -> None:
        try:
            if bag.checkpoint():
                self.checkpoints += 1
            free = free_bytes(self.path)
            if free < self.config.min_free_bytes:
                raise OSError(f'disk nearly full: {free / 1e6:.1f} MB free, the minimum is '
                              f'{self.config.min_free_bytes / 1e6:.1f} MB')
        except OSError as exc:
            self._fail(self._disk_message(exc), bag)
            return
        if self._on_checkpoint is not None:
            try:
                self._on_checkpoint(self)
            except Exception:  # noqa: BLE001 - a metadata hook must not stop the recording
                LOG.exception('checkpoint hook failed')

    def _disk_message(self, exc: OSError) -> str:
        kept = '' if self.last_stamp_ns is None else ' up to the last checkpoint'
        return (f'recording of {self.path.name} stopped: {exc.strerror or exc} '
                f'({self.path}); the bag keeps what was written{kept}')

    def _fail(self, message: str, bag: BagWriter | None) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = message
            self._drop_queued()
        LOG.error('%s', message)
        if bag is not None:
            bag.abort()
        if self._on_error is not None:
            try:
                self._on_error(self, message)
            except Exception:  # noqa: BLE001
                LOG.exception('error hook failed')

    def _drop_queued(self) -> None:
        for topic, _type, _data, _stamp in self._queue:
            self._counts[topic].dropped += 1
        self._queue.clear()
        self._queue_bytes = 0


def mcap_is_complete(path: str | Path) -> bool:
    """True when the MCAP has a valid footer and summary (opens with any indexed reader)."""
    from mcap.reader import make_reader
    try:
        with open(path, 'rb') as handle:
            return make_reader(handle).get_summary() is not None
    except Exception:  # noqa: BLE001 - any parse failure means "not complete"
        return False


def repair_bag(bag_dir: str | Path, distro: str | None = None) -> dict[str, Any]:
    """Make an episode bag whose MCAP lost its footer (a kill during the checkpoint write,
    a disk failure) readable again. Every complete chunk is salvaged with its raw bytes
    unchanged into a fresh bag; the damaged file is kept as `<name>.mcap.damaged`. A bag
    that is already complete is left alone. Returns what was done."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, DataEnd, Footer, Message, Schema
    from mcap.stream_reader import StreamReader
    bag_dir = Path(bag_dir)
    mcap_path = bag_dir / f'{bag_dir.name}.mcap'
    if not mcap_path.is_file():
        raise ValueError(f'{bag_dir} is not an episode bag: {mcap_path.name} is missing')
    if mcap_is_complete(mcap_path) and (bag_dir / 'metadata.yaml').is_file():
        return {'bag': str(bag_dir), 'repaired': False}
    schemas, channels, messages = {}, {}, []
    with open(mcap_path, 'rb') as handle:
        try:
            for record in StreamReader(handle, record_size_limit=1 << 31).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message) and record.channel_id in channels:
                    messages.append(record)
                elif isinstance(record, (DataEnd, Footer)):
                    break
        except (McapError, EOFError, ValueError, OSError, struct.error, UnicodeDecodeError):
            pass   # the first incomplete record: everything before it is intact
    hashes = _hashes_from_metadata(bag_dir / 'metadata.yaml')
    staging = bag_dir.parent / f'.{bag_dir.name}.repair'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        bag = BagWriter(staging / bag_dir.name, distro)
        bag.open()
        for message in sorted(messages, key=lambda m: m.log_time):
            channel = channels[message.channel_id]
            schema = schemas.get(channel.schema_id)
            if schema is None:
                continue
            bag.add_topic(channel.topic, schema.name, msgdef=schema.data.decode(),
                          rihs01=hashes.get(channel.topic))
            bag.write(channel.topic, schema.name, message.data, message.log_time)
        bag.close()
        os.replace(mcap_path, mcap_path.with_name(mcap_path.name + '.damaged'))
        os.replace(staging / bag_dir.name / mcap_path.name, mcap_path)
        os.replace(staging / bag_dir.name / 'metadata.yaml', bag_dir / 'metadata.yaml')
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.warning('repaired %s: %d messages salvaged, damaged file kept as %s.damaged',
                bag_dir, len(messages), mcap_path.name)
    return {'bag': str(bag_dir), 'repaired': True, 'messages': len(messages),
            'damaged': str(mcap_path) + '.damaged'}


def _hashes_from_metadata(path: Path) -> dict[str, str]:
    try:
        info = yaml.safe_load(path.read_text())['rosbag2_bagfile_information']
        return {t['topic_metadata']['name']: t['topic_metadata']['type_description_hash']
                for t in info['topics_with_message_count']}
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """All of `data` at `offset`, unbuffered (os.pwrite may write less than asked)."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
