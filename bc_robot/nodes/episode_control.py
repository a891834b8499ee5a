"""Episode control for teleop_node: the /bc/episode/* services and Joy buttons, events on
/bc/episode/events, the latched /bc/episode/state, success labels and episode metadata.
Rules live in `bc_robot.core.authority.EpisodeLifecycle`; bags in `episode_recorder`."""
from __future__ import annotations

import copy
import json
import time
from collections import deque
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.serialization import serialize_message
from std_msgs.msg import String
from std_srvs.srv import Trigger

from bc_robot.core.authority import EpisodeError, EpisodeLifecycle
from bc_robot.recording.episode import EpisodeMetadata, latency_stats

ACTIONS = ('start', 'stop', 'save', 'discard', 'mark_success', 'mark_failure')
TASK_STATE_MAX_AGE = 2.0   # s: an older /sim/task_state does not label success


class EpisodeControl:
    def __init__(self, node) -> None:
        self.node = node
        p = node.p
        self.episodes = EpisodeLifecycle(p['mode'])
        self.by_name: dict[str, Any] = {}
        self.meta: dict[str, EpisodeMetadata] = {}
        self.last_error: str | None = None
        self.policy_ages: deque = deque(maxlen=100_000)    # ms, /bc/policy/target age
        self.policy_report: dict = {}                      # latest policy_node figures
        self.policy_reports: deque = deque(maxlen=10_000)  # … during the episode
        self._published: dict | None = None
        self._events = node.create_publisher(String, p['episode_events_topic'], 10)
        self._state = node.create_publisher(String, p['episode_state_topic'], node.latched_qos)
        group = MutuallyExclusiveCallbackGroup()
        for action in ACTIONS:
            node.create_service(Trigger, f'{p["episode_service_prefix"]}/{action}',
                                lambda _req, res, a=action: self._on_service(a, res),
                                callback_group=group)

    @property
    def recording(self) -> bool:
        return self.episodes.recording

    def on_policy_target(self, stamp: float, now: float) -> None:
        if stamp > 0 and self.episodes.recording:
            self.policy_ages.append((now - stamp) * 1e3)

    def on_diagnostics(self, msg) -> None:
        """Keep the policy node's own latency figures (obs→target, inference) per episode."""
        for status in msg.status:
            if 'policy' in status.name and not status.name.startswith(self.node.get_name()):
                report = {kv.key: kv.value for kv in status.values
                          if '_ms' in kv.key or 'latency' in kv.key
                          or kv.key in ('executor', 'provider', 'model', 'sha256')}
                with self.node.lock:
                    self.policy_report = report
                    if self.episodes.recording:
                        self.policy_reports.append(report)

    def _on_service(self, action: str, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.action(action, wait=True)
        return response

    def action(self, action: str, wait: bool) -> tuple[bool, str]:
        """Run one episode action. `wait`: block until the bag is open (services); buttons
        do not wait (they run in the control callback group)."""
        node = self.node
        now = node.now()
        with node.lock:
            try:
                message, writer = self._step(action, now)
            except EpisodeError as exc:
                return False, str(exc)
            finally:
                self.publish_state()
        if writer is not None and wait:
            error = writer.wait_open(5.0)
            if error:
                return False, error
        return True, message

    def _step(self, action: str, now: float):
        node, episodes, recorder = self.node, self.episodes, self.node.recorder
        if action == 'start':
            task = node.p['task'] or str(node.task_state.get('task', ''))
            name = recorder.next_name(task, time.strftime('%Y%m%d-%H%M%S'))
            episode, previous = episodes.start(name, now, node.authority.human,
                                               node.authority.policy_alive(now))
            node.authority.set_episode(True)
            self.by_name[name] = episode
            if previous is not None:
                recorder.update(previous.name)
            self.policy_ages.clear()
            self.policy_reports.clear()
            writer = recorder.begin(name)
            self.event('start', now)
            return f'episode {name} started', writer
        if action in ('mark_success', 'mark_failure'):
            episode = episodes.label(action == 'mark_success', 'operator')
            self.event(action, now, success=episode.success)
            recorder.update(episode.name)
            return f'episode {episode.name} labelled success={episode.success}', None
        if action == 'stop' or (action in ('save', 'discard') and episodes.recording):
            self.stop_recording(now, 'stop')
        if action == 'stop':
            episode = episodes.current
            if node.p['auto_save']:
                episodes.save(now)
                self.event('save', now)
            return f'episode {episode.name} {episode.status}', None
        episode = episodes.save(now) if action == 'save' else episodes.discard(now)
        self.event(action, now)
        if action == 'discard':
            recorder.discard(episode.name)
        else:
            recorder.update(episode.name)
        return f'episode {episode.name} {episode.status}', None

    def stop_recording(self, now: float, reason: str, status: str | None = None) -> None:
        """End the recording episode (lock held): automatic success label from a fresh
        /sim/task_state unless the operator labelled it, stop event, bag finalized."""
        node = self.node
        episode = self.episodes.stop(now)
        node.authority.set_episode(False)
        state = node.task_state
        if episode.success_source != 'operator' and 'success' in state \
                and now - state.get('_received', -1e9) < TASK_STATE_MAX_AGE:
            self.episodes.label(bool(state['success']), 'task_state')
        if status is not None:
            episode.status = status
        self.event('stop', now, reason=reason, success=episode.success)
        node.recorder.end(episode.name, node.p['stop_grace'])

    def on_recording_error(self, name: str, message: str) -> None:
        """Writer thread: the bag failed. The episode ends as 'failed' (what was written
        stays readable); teleoperation and authority are untouched."""
        node = self.node
        now = node.now()
        with node.lock:
            node.counts['recording_errors'] += 1
            self.last_error = message
            node.get_logger().error(message)
            current = self.episodes.current
            if current is not None and current.name == name and self.episodes.recording:
                self.stop_recording(now, 'recording_error', status='failed')
            self.event('recording_error', now, message=message, failed_episode=name)
            self.publish_state()

    def event(self, event: str, now: float, **extra) -> None:
        current = self.episodes.current
        data = {'event': event, 'time': now, 'episode': current.name if current else None,
                'state': self.node.authority.state.value, **extra}
        msg = String(data=json.dumps(data))
        try:
            self._events.publish(msg)
        except Exception:  # noqa: BLE001 - context already shut down (SIGINT): nobody listens
            pass
        # Into the episode's bag directly (the same CDR bytes subscribers get): the start
        # and stop events must be in it whatever the DDS latency is against the stop grace.
        writer = self.node.recorder.writers.get(current.name) if current else None
        if writer is not None and self._events.topic_name in self.node.recorder.direct_topics:
            writer.offer(self._events.topic_name, 'std_msgs/msg/String',
                         serialize_message(msg), int(now * 1e9))

    def publish_state(self) -> None:
        """Latched JSON state, published when it changes."""
        node = self.node
        now = node.now()
        authority, current = node.authority, self.episodes.current
        writer = node.recorder.writers.get(current.name) if current else None
        recording = self.episodes.recording
        state = {'state': authority.state.value, 'mode': authority.mode.value,
                 'episode': current.name if current and recording else None,
                 'recording': bool(writer is not None and recording and writer.error is None),
                 'authority': 'human' if authority.human else 'policy',
                 'pedal': authority.pedal.down, 'policy_alive': authority.policy_alive(now),
                 'last_episode': None if current is None else {
                     'name': current.name, 'status': current.status, 'success': current.success},
                 'error': self.last_error}
        if state != self._published:
            self._published = state
            try:
                self._state.publish(String(data=json.dumps(dict(state, time=now))))
            except Exception:  # noqa: BLE001 - context shut down: nobody to tell
                pass

    def metadata(self, name: str) -> EpisodeMetadata:
        """Metadata of episode `name` (any thread). Fixed facts are captured once."""
        node = self.node
        with node.lock:
            episode = self.by_name[name]
            meta = self.meta.get(name)
            if meta is None:
                p = node.p
                meta = self.meta[name] = EpisodeMetadata(
                    name, task=p['task'] or str(node.task_state.get('task', '')),
                    operator=p['operator'], mode=p['mode'], start_time=episode.start_time,
                    model=dict(node.model), dart=dict(vars(node.dart.config)),
                    notes={'wall_start': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                           'record_topics': list(p['record_topics'])})
            if not meta.task:   # /sim/task_state may arrive after the start
                meta.task = node.p['task'] or str(node.task_state.get('task', ''))
            meta.status = episode.status
            meta.success, meta.success_source = episode.success, episode.success_source
            meta.end_time = episode.end_time
            meta.interventions = episode.interventions()
            if self.episodes.current is episode:
                report = dict(self.policy_report)
                meta.policy_latency = {
                    'target_age_ms': latency_stats(list(self.policy_ages)),
                    'reported_last': report,
                    'reported_worst': _worst(self.policy_reports)}
                if not meta.model and report:
                    meta.model = {k: report[k] for k in
                                  ('model', 'model_name', 'sha256', 'onnx_sha256') if k in report}
            return copy.deepcopy(meta)


def _worst(reports) -> dict[str, float]:
    """Largest value of each numeric key the policy node reported during the episode."""
    worst: dict[str, float] = {}
    for report in reports:
        for key, value in report.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if number == number:   # not NaN
                worst[key] = max(worst.get(key, number), number)
    return worst
