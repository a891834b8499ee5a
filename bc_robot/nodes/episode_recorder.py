"""Recording wiring for teleop_node: raw subscriptions to the recorded topics, one
`EpisodeWriter` per episode, episode.json, discard.

The subscriptions live on a node of their own spun by its own executor thread, so a camera
burst never delays the teleop control tick; they take the raw serialized bytes (raw=True)
and hand them unchanged to the writer's bounded queue. Types and QoS come from the graph:
a topic is subscribed once a publisher shows up, reliable/transient-local only when every
publisher offers it (as `ros2 bag record` does), and re-subscribed when that changes. The
last message of a latched (transient-local) topic is replayed at the start of each
episode, so every bag knows the intervention flag and task state from its first instant.
"""
from __future__ import annotations

import importlib
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from bc_robot.recording.episode import EpisodeMetadata, recover_interrupted, write_episode_json
from bc_robot.recording.writer import (EpisodeWriter, WriterConfig, make_qos,
                                       name_native_thread)


def message_class(type_name: str) -> type:
    """'sensor_msgs/msg/Image' → the rclpy message class."""
    package, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class TopicTap:
    """Raw subscriptions feeding whichever writer is attached."""

    def __init__(self, parent: Node, topics: list[str], depth: int,
                 discovery_period: float = 0.5) -> None:
        use_sim_time = parent.get_parameter('use_sim_time').value
        self.node = rclpy.create_node(
            f'{parent.get_name()}_recorder', namespace=parent.get_namespace(),
            use_global_arguments=False, start_parameter_services=False,
            parameter_overrides=[Parameter('use_sim_time', value=use_sim_time)])
        self.topics = list(topics)
        self.depth = depth
        self._subs: dict[str, tuple[Any, str, tuple[bool, bool]]] = {}
        self._latched: dict[str, tuple[str, bytes]] = {}
        self.lost: dict[str, int] = {}
        self._offered: dict[str, Any] = {}
        self._sim_time = bool(use_sim_time)
        self._writer: EpisodeWriter | None = None
        self._lock = threading.Lock()
        self.node.create_timer(discovery_period, self._discover)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name='recorder-spin')
        self._thread.start()

    def _spin(self) -> None:
        name_native_thread('recorder-spin')
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def attach(self, writer: EpisodeWriter | None) -> None:
        """Feed `writer` from now on; replay the latched topics' last messages into it."""
        now = self.node.get_clock().now().nanoseconds
        if writer is not None:
            for topic, offered in list(self._offered.items()):
                writer.set_qos(topic, offered)
        with self._lock:
            self._writer = writer
            replay = dict(self._latched) if writer is not None else {}
        for topic, (msgtype, data) in replay.items():
            writer.offer(topic, msgtype, data, now)

    def subscribed(self) -> dict[str, str]:
        return {topic: entry[1] for topic, entry in self._subs.items()}

    def _discover(self) -> None:
        for topic in self.topics:
            infos = self.node.get_publishers_info_by_topic(topic)
            infos = [i for i in infos if i.node_name != self.node.get_name()]
            if not infos:
                continue
            msgtype = infos[0].topic_type
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for i in infos)
            current = self._subs.get(topic)
            if current is not None and current[1] == msgtype and current[2] == (reliable, latched):
                continue
            if current is not None:
                self.node.destroy_subscription(current[0])
            self._subscribe(topic, msgtype, reliable, latched)

    def _subscribe(self, topic: str, msgtype: str, reliable: bool, latched: bool) -> None:
        try:
            msg_class = message_class(msgtype)
        except (ImportError, AttributeError, ValueError):
            self.node.get_logger().error(f'cannot record {topic}: type {msgtype} is not importable')
            self._subs[topic] = (None, msgtype, (reliable, latched))
            return
        qos = QoSProfile(depth=1 if latched else self.depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                         else DurabilityPolicy.VOLATILE)
        offered = make_qos(reliable, latched, 1 if latched else self.depth)
        self._offered[topic] = offered
        if self._writer is not None:
            self._writer.set_qos(topic, offered)
        clock = self.node.get_clock()
        # receive time as `ros2 bag record` stamps it; the system clock unless sim time
        now_ns = (lambda: clock.now().nanoseconds) if self._sim_time else time.time_ns

        def on_message(data: bytes) -> None:
            stamp = now_ns()
            if latched:
                self._latched[topic] = (msgtype, data)
            writer = self._writer
            if writer is not None:
                writer.offer(topic, msgtype, data, stamp)

        kwargs = {}
        try:
            try:
                from rclpy.event_handler import SubscriptionEventCallbacks
            except ImportError:   # Humble
                from rclpy.qos_event import SubscriptionEventCallbacks
            kwargs['event_callbacks'] = SubscriptionEventCallbacks(
                message_lost=lambda info: self._count_lost(topic, info.total_count_change))
        except (ImportError, TypeError):  # no message-lost event in this rclpy
            pass
        sub = self.node.create_subscription(msg_class, topic, on_message, qos, raw=True, **kwargs)
        self._subs[topic] = (sub, msgtype, (reliable, latched))
        self.node.get_logger().info(f'recording {topic} [{msgtype}] '
                                    f'{"reliable" if reliable else "best effort"}'
                                    f'{", latched" if latched else ""}')

    def _count_lost(self, topic: str, count: int) -> None:
        self.lost[topic] = self.lost.get(topic, 0) + int(count)

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=10)
        self.node.destroy_node()


class EpisodeRecorder:
    """Writers, episode folders and episode.json for the teleop node. Disk work happens on
    the writer thread or on a one-thread I/O pool, never in the caller."""

    def __init__(self, node: Node, params: dict[str, Any],
                 metadata: Callable[[str], EpisodeMetadata]) -> None:
        self.params = params
        self.output_dir = Path(params['output_dir']).expanduser()
        self._metadata = metadata          # episode name → current metadata (node state)
        self._logger = node.get_logger()
        self.config = WriterConfig(
            max_queue_bytes=int(params['max_queue_mb']) * 1024 * 1024,
            flush_period=params['flush_period'],
            min_free_bytes=int(params['min_free_mb']) * 1024 * 1024,
            fsync=params['fsync'], distro=params['ros_distro'])
        # the node's own episode events go into the bag directly, not through DDS
        events = params['episode_events_topic']
        self.direct_topics = {events} if events in params['record_topics'] else set()
        topics = [t for t in params['record_topics'] if t not in self.direct_topics]
        self.tap = TopicTap(node, topics, params['record_qos_depth']) if params['record'] \
            else None
        self.writers: dict[str, EpisodeWriter] = {}
        self.on_error: Callable[[str, str], None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix='episode-io')
        self._lost_at_start: dict[str, dict[str, int]] = {}
        self._lost_at_end: dict[str, dict[str, int]] = {}
        if self.tap is not None:
            self._io.submit(self.recover_crashed)
        self._sequence = 0

    def next_name(self, task: str, stamp: str) -> str:
        prefix = self.params['episode_prefix'] or task or 'episode'
        prefix = ''.join(c if c.isalnum() or c in '-_' else '_' for c in prefix)
        while True:
            self._sequence += 1
            name = f'{prefix}_{stamp}_{self._sequence:03d}'
            if not (self.output_dir / name).exists():
                return name

    def begin(self, name: str) -> EpisodeWriter | None:
        """Start the writer thread for a new episode (it creates the folder)."""
        if self.tap is None:
            return None
        writer = EpisodeWriter(
            self.output_dir / name, self.config,
            custom_data={'bc_robot.episode': name},
            on_checkpoint=lambda w: self._write_json(w, name),
            on_error=lambda w, message: self.on_error and self.on_error(name, message))
        self.writers[name] = writer
        self._lost_at_start[name] = dict(self.tap.lost)
        writer.start()
        self.tap.attach(writer)
        return writer

    def end(self, name: str, grace: float) -> None:
        """Stop recording `name` after `grace` s; finalize bag + episode.json off-thread."""
        writer = self.writers.get(name)
        if writer is None:
            return
        writer.request_stop(grace)
        if self.tap is not None:
            self._lost_at_end[name] = dict(self.tap.lost)
        self._io.submit(self._finalize, name)

    def _finalize(self, name: str) -> None:
        writer = self.writers[name]
        writer.join()
        self._write_json(writer, name)

    def update(self, name: str) -> None:
        """Rewrite episode.json after a label or save (once the writer is done)."""
        if name in self.writers:
            self._io.submit(self._finalize, name)

    def discard(self, name: str) -> None:
        if name in self.writers:
            self._io.submit(self._discard, name)

    def _discard(self, name: str) -> None:
        writer = self.writers[name]
        writer.join()
        source = self.output_dir / name
        if not source.exists():
            return
        if self.params['discard_mode'] == 'delete':
            shutil.rmtree(source, ignore_errors=True)
            self._logger.info(f'episode {name} discarded (deleted)')
            return
        trash = self.output_dir / '.discarded'
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / name
        suffix = 0
        while target.exists():
            suffix += 1
            target = trash / f'{name}.{suffix}'
        self._write_json(writer, name)
        shutil.move(str(source), str(target))
        self._logger.info(f'episode {name} discarded: moved to {target}')

    def recover_crashed(self) -> None:
        """Finalize episodes a previous run never finished (killed): see
        `recover_interrupted`."""
        try:
            for name, report in recover_interrupted(self.output_dir, distro=self.config.distro):
                self._logger.warning(
                    f'episode {name} was not finalized by a previous run: marked interrupted '
                    f'({"bag repaired" if report["repaired"] else "bag intact"})')
        except OSError as exc:
            self._logger.error(f'cannot check {self.output_dir} for interrupted episodes: {exc}')

    def _write_json(self, writer: EpisodeWriter, name: str) -> None:
        if not writer.path.is_dir():
            return
        metadata = self._metadata(name)
        metadata.recording = writer.report()
        if self.tap is not None:   # DDS 'message lost' events during this episode
            before = self._lost_at_start.get(name, {})
            after = self._lost_at_end.get(name) or dict(self.tap.lost)
            lost = {t: n - before.get(t, 0) for t, n in after.items()}
            metadata.recording['lost_in_transport'] = {t: n for t, n in lost.items() if n}
        try:
            write_episode_json(writer.path, metadata)
        except OSError as exc:
            self._logger.error(f'cannot write episode.json for {name}: {exc}')

    def close(self) -> None:
        for writer in self.writers.values():
            writer.request_stop(0.0)
        self._io.shutdown(wait=True)
        for name, writer in self.writers.items():
            writer.join(timeout=30)
        if self.tap is not None:
            self.tap.close()
