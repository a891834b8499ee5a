"""Read a recorded episode folder back: messages per topic with their timestamps.

An episode is one rosbag2 folder (MCAP storage, `metadata.yaml`, `episode.json`). The reader
walks the MCAP records itself instead of trusting the summary section, because the bags that
matter most are the ones a crash left behind:

* `metadata.yaml` missing (rosbag2 writes it at close) → the `*.mcap` files in the folder
  are read in name order;
* MCAP summary/footer missing but the data ends on a record boundary → every complete
  message is returned (a warning is logged);
* a file cut inside a record (truncated), a chunk whose CRC does not match, or fewer
  messages on a topic than `metadata.yaml` declares → ValueError naming the file and topic,
  unless `allow_truncated=True` (inspection tools), which keeps what is readable.

Messages are decoded from CDR with the rosbags typestore (ROS 2 Kilted message definitions,
plus any type whose definition the MCAP schema carries), so nothing here needs rclpy.
"""
from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import yaml

LOG = logging.getLogger(__name__)

MCAP_MAGIC = b'\x89MCAP0\r\n'
EPISODE_METADATA = 'episode.json'
BAG_METADATA = 'metadata.yaml'

# MCAP opcodes the reader acts on (others are skipped by length).
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
_OP_CHUNK, _OP_DATA_END = 0x06, 0x0F
_OP_NAMES = {0x01: 'Header', 0x02: 'Footer', 0x03: 'Schema', 0x04: 'Channel', 0x05: 'Message',
             0x06: 'Chunk', 0x07: 'MessageIndex', 0x08: 'ChunkIndex', 0x09: 'Attachment',
             0x0A: 'AttachmentIndex', 0x0B: 'Statistics', 0x0C: 'Metadata',
             0x0D: 'MetadataIndex', 0x0E: 'SummaryOffset', 0x0F: 'DataEnd'}


@dataclass(frozen=True)
class BagMessage:
    """One message: `log_time` is when the recorder received it (ns, the bag's clock),
    `msg` the decoded message (None when read with decode=False), `data` the CDR bytes."""

    topic: str
    msgtype: str
    log_time: int
    publish_time: int
    data: bytes
    msg: Any = None


@dataclass
class TopicMessages:
    """All messages of one topic in log-time order."""

    topic: str
    msgtype: str
    log_times: np.ndarray  # int64 ns
    messages: list[Any]

    def __len__(self) -> int:
        return len(self.messages)

    def rate_hz(self) -> float:
        """Median message rate (Hz); 0 with fewer than two messages."""
        if len(self.log_times) < 2:
            return 0.0
        gaps = np.diff(self.log_times.astype(np.float64))
        gaps = gaps[gaps > 0]
        return float(1e9 / np.median(gaps)) if gaps.size else 0.0


@dataclass
class Episode:
    """One recorded episode folder, read back."""

    path: Path
    files: list[Path]
    metadata: dict[str, Any]
    topics: dict[str, TopicMessages]
    complete: bool = True  # False when the summary/footer or metadata.yaml was missing
    warnings: list[str] = field(default_factory=list)

    def require(self, topic: str) -> TopicMessages:
        """The topic's messages, or ValueError naming the file(s) and the topic."""
        found = self.topics.get(topic)
        if found is None or len(found) == 0:
            names = ', '.join(str(f) for f in self.files) or str(self.path)
            recorded = ', '.join(sorted(t for t, m in self.topics.items() if len(m))) or 'none'
            raise ValueError(f'{names}: required topic {topic} is missing '
                             f'(recorded topics: {recorded})')
        return found

    @property
    def start_time(self) -> int:
        times = [int(m.log_times[0]) for m in self.topics.values() if len(m)]
        return min(times) if times else 0

    @property
    def end_time(self) -> int:
        times = [int(m.log_times[-1]) for m in self.topics.values() if len(m)]
        return max(times) if times else 0


class _Typestore:
    """Lazily built rosbags typestore; types missing from it are registered from the
    definition the MCAP schema carries."""

    _store = None

    @classmethod
    def get(cls):
        if cls._store is None:
            from rosbags.typesys import Stores, get_typestore
            cls._store = get_typestore(Stores.ROS2_KILTED)
        return cls._store

    @classmethod
    def ensure(cls, name: str, encoding: str, definition: bytes, where: str) -> None:
        store = cls.get()
        if name in store.types:
            return
        if encoding != 'ros2msg':
            raise ValueError(f'{where}: message type {name} has schema encoding {encoding!r}; '
                             f'only ros2msg schemas can be decoded')
        from rosbags.typesys import get_types_from_msg
        try:
            store.register(get_types_from_msg(definition.decode('utf-8'), name))
        except Exception as exc:  # rosbags raises several parser error types
            raise ValueError(f'{where}: cannot parse the schema of {name}: {exc}') from None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        LOG.warning('%s is unreadable (%s); reading the MCAP files directly', path, exc)
        return None
    if not isinstance(data, dict) or 'rosbag2_bagfile_information' not in data:
        LOG.warning('%s is not rosbag2 metadata; reading the MCAP files directly', path)
        return None
    return data['rosbag2_bagfile_information']


def read_episode_metadata(path: str | Path) -> dict[str, Any]:
    """`episode.json` of an episode folder ({} when absent); ValueError when it is not a
    JSON object."""
    meta_path = Path(path) / EPISODE_METADATA
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f'{meta_path} is not valid JSON: {exc}') from None
    if not isinstance(data, dict):
        raise ValueError(f'{meta_path} must hold a JSON object, got {type(data).__name__}')
    return data


def _bag_files(path: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """The MCAP files of a bag folder in order, and its rosbag2 metadata if readable."""
    if path.is_file():
        if path.suffix != '.mcap':
            raise ValueError(f'{path} is not an MCAP file (.mcap)')
        return [path], None
    if not path.is_dir():
        raise ValueError(f'episode {path} does not exist')
    info = _read_yaml(path / BAG_METADATA) if (path / BAG_METADATA).is_file() else None
    if info is not None:
        storage = info.get('storage_identifier', 'mcap')
        if storage != 'mcap':
            raise ValueError(f'{path}: storage {storage!r} is not supported; record episodes '
                             f'with MCAP storage')
        files = [path / rel for rel in info.get('relative_file_paths', [])]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f'{path / BAG_METADATA} lists files that do not exist: {missing}')
        if files:
            return files, info
    files = sorted(path.glob('*.mcap'))
    if not files:
        others = sorted(p.name for p in path.glob('*.db3'))
        hint = f' (found sqlite3 files {others}: record with MCAP storage)' if others else ''
        raise ValueError(f'{path}: no MCAP file in the episode folder{hint}')
    return files, info


class _Truncated(Exception):
    def __init__(self, offset: int, needed: int, opcode: int | None) -> None:
        super().__init__(offset, needed, opcode)
        self.offset, self.needed, self.opcode = offset, needed, opcode


def _records(buf, start: int, end: int) -> Iterator[tuple[int, memoryview, int]]:
    """(opcode, body, offset) for each record in buf[start:end]; _Truncated when the data
    stops inside a record."""
    view = memoryview(buf)
    pos = start
    while pos < end:
        if end - pos < 9:
            raise _Truncated(pos, 9, buf[pos] if end > pos else None)
        opcode = buf[pos]
        (length,) = struct.unpack_from('<Q', buf, pos + 1)
        if pos + 9 + length > end:
            raise _Truncated(pos, 9 + length, opcode)
        yield opcode, view[pos + 9:pos + 9 + length], pos
        pos += 9 + length


def _string(body: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', body, pos)
    return bytes(body[pos + 4:pos + 4 + n]).decode('utf-8'), pos + 4 + n


def _decompress(compression: str, data: memoryview, size: int, where: str) -> bytes:
    if compression == '':
        return bytes(data)
    if compression == 'zstd':
        import zstandard
        return zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=size)
    if compression == 'lz4':
        import lz4.frame
        return lz4.frame.decompress(bytes(data))
    raise ValueError(f'{where}: unsupported MCAP chunk compression {compression!r}')


class _McapScan:
    """Walks one MCAP file; yields BagMessage in file order."""

    def __init__(self, path: Path, topics: set[str] | None, decode: bool,
                 allow_truncated: bool) -> None:
        self.path = path
        self.topics = topics
        self.decode = decode
        self.allow_truncated = allow_truncated
        self.schemas: dict[int, tuple[str, str, bytes]] = {}
        self.channels: dict[int, tuple[str, int, str]] = {}  # id → (topic, schema, encoding)
        self.complete = False  # footer seen
        self.truncated = ''
        self.last_topic = ''

    def _on_schema(self, body: memoryview) -> None:
        (sid,) = struct.unpack_from('<H', body, 0)
        name, pos = _string(body, 2)
        encoding, pos = _string(body, pos)
        (n,) = struct.unpack_from('<I', body, pos)
        self.schemas[sid] = (name, encoding, bytes(body[pos + 4:pos + 4 + n]))

    def _on_channel(self, body: memoryview) -> None:
        (cid, sid) = struct.unpack_from('<HH', body, 0)
        topic, pos = _string(body, 4)
        encoding, pos = _string(body, pos)
        self.channels[cid] = (topic, sid, encoding)

    def _on_message(self, body: memoryview) -> BagMessage | None:
        cid, _seq, log_time, publish_time = struct.unpack_from('<HIQQ', body, 0)
        channel = self.channels.get(cid)
        if channel is None:
            raise ValueError(f'{self.path}: message on channel {cid} that was never declared '
                             f'(corrupt MCAP file)')
        topic, sid, encoding = channel
        self.last_topic = topic
        if self.topics is not None and topic not in self.topics:
            return None
        name, schema_encoding, definition = self.schemas.get(sid, ('', '', b''))
        data = bytes(body[22:])
        msg = None
        if self.decode:
            if encoding != 'cdr':
                raise ValueError(f'{self.path}: topic {topic} uses message encoding '
                                 f'{encoding!r}; only cdr is supported')
            _Typestore.ensure(name, schema_encoding, definition, f'{self.path} topic {topic}')
            try:
                msg = _Typestore.get().deserialize_cdr(data, name)
            except Exception as exc:  # rosbags raises struct/index errors on bad CDR
                raise ValueError(f'{self.path}: message on topic {topic} at log time '
                                 f'{log_time} does not decode as {name}: {exc}') from None
        return BagMessage(topic, name, int(log_time), int(publish_time), data, msg)

    def _truncation(self, exc: _Truncated, size: int, inside: str = '') -> str:
        kind = _OP_NAMES.get(exc.opcode, f'opcode {exc.opcode}') if exc.opcode is not None \
            else 'record'
        last = f'; last complete message on topic {self.last_topic}' if self.last_topic else ''
        return (f'{self.path} is truncated{inside}: a {kind} record at byte {exc.offset} needs '
                f'{exc.needed} bytes but the data ends at byte {size}{last}')

    def _handle(self, message: BagMessage | None) -> Iterator[BagMessage]:
        if message is not None:
            yield message

    def _chunk(self, body: memoryview, offset: int) -> Iterator[BagMessage]:
        _start, _end, size, crc = struct.unpack_from('<QQQI', body, 0)
        compression, pos = _string(body, 28)
        (length,) = struct.unpack_from('<Q', body, pos)
        data = body[pos + 8:pos + 8 + length]
        where = f'{self.path} chunk at byte {offset}'
        try:
            raw = _decompress(compression, data, size, where)
        except ValueError:
            raise
        except Exception as exc:  # zstd/lz4 errors on damaged data
            raise ValueError(f'{where}: cannot decompress ({compression}): {exc}') from None
        if crc:
            import zlib
            if zlib.crc32(raw) != crc:
                raise ValueError(f'{where}: CRC mismatch (damaged data); topics in this file: '
                                 f'{sorted({c[0] for c in self.channels.values()})}')
        try:
            for opcode, rec, _pos in _records(raw, 0, len(raw)):
                if opcode == _OP_SCHEMA:
                    self._on_schema(rec)
                elif opcode == _OP_CHANNEL:
                    self._on_channel(rec)
                elif opcode == _OP_MESSAGE:
                    yield from self._handle(self._on_message(rec))
        except _Truncated as exc:
            raise ValueError(self._truncation(exc, len(raw), f' inside the chunk at byte '
                                              f'{offset}')) from None

    def messages(self) -> Iterator[BagMessage]:
        try:
            buf = self.path.read_bytes()
        except OSError as exc:
            raise ValueError(f'{self.path} cannot be read: {exc}') from None
        if not buf:
            raise ValueError(f'{self.path} is empty (the recorder wrote nothing)')
        if buf[:8] != MCAP_MAGIC:
            raise ValueError(f'{self.path} is not an MCAP file (bad magic {buf[:8]!r})')
        try:
            for opcode, body, offset in _records(buf, 8, len(buf)):
                if opcode == _OP_SCHEMA:
                    self._on_schema(body)
                elif opcode == _OP_CHANNEL:
                    self._on_channel(body)
                elif opcode == _OP_MESSAGE:
                    yield from self._handle(self._on_message(body))
                elif opcode == _OP_CHUNK:
                    yield from self._chunk(body, offset)
                elif opcode == _OP_FOOTER:
                    self.complete = True
                    break
        except _Truncated as exc:
            text = self._truncation(exc, len(buf))
            if not self.allow_truncated:
                raise ValueError(text) from None
            self.truncated = text
            LOG.warning('%s (kept the readable part)', text)


def iter_messages(path: str | Path, topics: Iterable[str] | None = None, decode: bool = True,
                  allow_truncated: bool = False) -> Iterator[BagMessage]:
    """Messages of an episode folder (or one .mcap file) in file order; `topics` limits
    what is decoded and returned. Streaming: nothing but the current message is kept."""
    files, _info = _bag_files(Path(path))
    wanted = set(topics) if topics is not None else None
    for file in files:
        yield from _McapScan(file, wanted, decode, allow_truncated).messages()


def read_episode(path: str | Path, topics: Iterable[str] | None = None, decode: bool = True,
                 allow_truncated: bool = False,
                 transform: Callable[[BagMessage], Any] | None = None) -> Episode:
    """Read an episode folder: per-topic messages sorted by log time.

    `transform(message)` replaces what is kept per message (e.g. a preprocessed image
    instead of the full frame), so long camera streams need not sit in memory."""
    path = Path(path)
    files, info = _bag_files(path)
    wanted = set(topics) if topics is not None else None
    per_topic: dict[str, tuple[str, list[int], list[Any]]] = {}
    warnings: list[str] = []
    complete = info is not None
    if info is None and path.is_dir():
        warnings.append(f'{path}: {BAG_METADATA} is missing (recorder stopped early?)')
    for file in files:
        scan = _McapScan(file, wanted, decode, allow_truncated)
        for message in scan.messages():
            entry = per_topic.setdefault(message.topic, (message.msgtype, [], []))
            entry[1].append(message.log_time)
            entry[2].append(transform(message) if transform else
                            (message.msg if decode else message.data))
        if not scan.complete:
            complete = False
            warnings.append(scan.truncated or f'{file}: MCAP summary/footer missing (recorder '
                                              f'stopped early?); read every complete record')
        # Channels that exist but carried no (wanted) message still show up as empty topics.
        for topic, sid, _enc in scan.channels.values():
            if (wanted is None or topic in wanted) and topic not in per_topic:
                per_topic[topic] = (scan.schemas.get(sid, ('', '', b''))[0], [], [])
    for text in warnings:
        LOG.warning('%s', text)
    if info is not None and not allow_truncated:
        _check_counts(path, files, info, per_topic, wanted)
    topics_out = {}
    for topic, (msgtype, times, items) in per_topic.items():
        order = np.argsort(np.asarray(times, dtype=np.int64), kind='stable')
        topics_out[topic] = TopicMessages(topic, msgtype, np.asarray(times, dtype=np.int64)[order],
                                          [items[i] for i in order])
    metadata = read_episode_metadata(path) if path.is_dir() else {}
    return Episode(path, files, metadata, topics_out, complete, warnings)


def _check_counts(path: Path, files: list[Path], info: dict[str, Any],
                  per_topic: dict[str, tuple[str, list[int], list[Any]]],
                  wanted: set[str] | None) -> None:
    """metadata.yaml is written at close: fewer messages in the files than it declares
    means the data was cut after the metadata was written (a copy that stopped early)."""
    for entry in info.get('topics_with_message_count', []) or []:
        try:
            topic = entry['topic_metadata']['name']
            declared = int(entry['message_count'])
        except (KeyError, TypeError, ValueError):
            continue
        if wanted is not None and topic not in wanted:
            continue
        found = len(per_topic.get(topic, ('', [], []))[1])
        if found < declared:
            names = ', '.join(str(f) for f in files)
            raise ValueError(f'{names}: topic {topic} holds {found} messages but '
                             f'{path / BAG_METADATA} declares {declared}: the file is truncated')


@dataclass(frozen=True)
class TopicInfo:
    msgtype: str
    count: int
    first_time: int
    last_time: int


def bag_topics(path: str | Path, allow_truncated: bool = True) -> dict[str, TopicInfo]:
    """Topic → type, count and time span, without decoding (for `inspect`-style tools)."""
    counts: dict[str, list] = {}
    for message in iter_messages(path, decode=False, allow_truncated=allow_truncated):
        entry = counts.setdefault(message.topic, [message.msgtype, 0, message.log_time, 0])
        entry[1] += 1
        entry[2] = min(entry[2], message.log_time)
        entry[3] = max(entry[3], message.log_time)
    return {t: TopicInfo(*v) for t, v in counts.items()}
