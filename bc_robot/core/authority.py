"""Who drives the arm, and which episode is being recorded.

`Authority` is the DEMO / AUTONOMOUS / INTERVENING state machine behind the foot pedal;
`PedalFilter` turns raw, possibly bouncing pedal samples into the operator's intent;
`CommandedPose` remembers the pose the arm was last commanded to, the anchor for a bumpless
handover; `EpisodeLifecycle` is the start / stop / save / discard / label bookkeeping with
the intervention segments of each episode. All pure: the node feeds them times and inputs.

Decisions (written down in docs/teleop_recording.md):
- Taking over is immediate (the pedal is a safety input: no debounce delay on press);
  giving back needs the pedal to stay released for `release_delay`, which also absorbs
  contact bounce, so a chattering pedal gives one intervention, not fifty.
- In demo mode the human always has authority and the pedal is ignored (counted).
- In dagger mode the pedal always gives the human control, even when no policy is
  running; the segment is flagged `policy_alive: false` so training can tell it from a
  correction, and on release the bridge holds the arm until a policy publishes again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bc_robot.core.pose import Pose, is_finite

PEDAL_STYLES = ('hold', 'toggle')


class Mode(str, Enum):
    DEMO = 'demo'        # the human drives; episodes are demonstrations
    DAGGER = 'dagger'    # the policy drives; the pedal hands control to the human


class State(str, Enum):
    IDLE = 'IDLE'                    # no episode in progress
    DEMO = 'DEMO'                    # demonstration being recorded
    AUTONOMOUS = 'AUTONOMOUS'        # dagger episode, policy in control
    INTERVENING = 'INTERVENING'      # dagger episode, human in control (pedal)


@dataclass(frozen=True)
class PedalConfig:
    style: str = 'hold'            # 'hold': down = human; 'toggle': each press flips
    release_delay: float = 0.15    # s the pedal must stay up before a hold ends
    toggle_debounce: float = 0.3   # s the pedal must have been up before a toggle press counts

    def __post_init__(self) -> None:
        if self.style not in PEDAL_STYLES:
            raise ValueError(f'pedal style = {self.style!r} must be one of {PEDAL_STYLES}')
        for name in ('release_delay', 'toggle_debounce'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and 0.0 <= value <= 5.0):
                raise ValueError(f'pedal {name} = {value!r} must be in [0, 5] s')


class PedalFilter:
    """Raw pedal samples (any rate, any bounce) → logical `down`."""

    def __init__(self, config: PedalConfig) -> None:
        self.config = config
        self.down = False
        self.raw: bool | None = None
        self.bounces = 0            # raw changes that did not change `down`
        self._raw_since: float | None = None   # time of the last raw change

    def update(self, raw: bool, now: float) -> bool:
        raw = bool(raw)
        previous_raw, previous_since = self.raw, self._raw_since
        if raw != previous_raw:
            self.raw, self._raw_since = raw, now
        if self.config.style == 'hold':
            if raw:
                if self.down and previous_raw is False:
                    self.bounces += 1   # re-pressed within the release delay
                self.down = True
            return self.poll(now)
        # toggle: a press counts only after the pedal was up for toggle_debounce
        if raw and previous_raw is not True:
            up_for = math.inf if previous_since is None else now - previous_since
            if previous_raw is None or up_for >= self.config.toggle_debounce:
                self.down = not self.down
            else:
                self.bounces += 1
        return self.down

    def poll(self, now: float) -> bool:
        """Apply the release delay; call every tick."""
        if (self.config.style == 'hold' and self.down and self.raw is False
                and now - self._raw_since >= self.config.release_delay):
            self.down = False
        return self.down

    def reset(self) -> None:
        self.down, self.raw, self._raw_since = False, None, None


@dataclass(frozen=True)
class Transition:
    """A change of who drives. `human` is the new authority."""

    time: float
    previous: State
    state: State
    human: bool
    policy_alive: bool


class Authority:
    """The state machine. `human` tells the bridge (via /bc/intervention) whose target to
    execute; `state` adds whether an episode is in progress."""

    def __init__(self, mode: Mode | str, pedal: PedalConfig, policy_timeout: float = 0.5
                 ) -> None:
        self.mode = Mode(mode)
        self.pedal = PedalFilter(pedal)
        self.policy_timeout = policy_timeout
        self.episode_active = False
        self.pedal_ignored = 0
        self._policy_time: float | None = None
        self._human = self.mode is Mode.DEMO

    @property
    def human(self) -> bool:
        return self._human

    @property
    def state(self) -> State:
        if not self.episode_active:
            return State.IDLE
        if self.mode is Mode.DEMO:
            return State.DEMO
        return State.INTERVENING if self._human else State.AUTONOMOUS

    def policy_seen(self, now: float) -> None:
        self._policy_time = now

    def policy_alive(self, now: float) -> bool:
        return self._policy_time is not None and now - self._policy_time <= self.policy_timeout

    def on_pedal(self, raw: bool, now: float) -> Transition | None:
        if self.mode is Mode.DEMO:
            if raw and self.pedal.raw is not True:
                self.pedal_ignored += 1
            self.pedal.raw = bool(raw)
            return None
        self.pedal.update(raw, now)
        return self._settle(now)

    def tick(self, now: float) -> Transition | None:
        if self.mode is Mode.DEMO:
            return None
        self.pedal.poll(now)
        return self._settle(now)

    def _settle(self, now: float) -> Transition | None:
        human = self.pedal.down
        if human == self._human:
            return None
        previous = self.state
        self._human = human
        return Transition(now, previous, self.state, human, self.policy_alive(now))

    def set_episode(self, active: bool) -> None:
        self.episode_active = bool(active)


class CommandedPose:
    """The last pose (and gripper) the bridge commanded the arm to, for bumpless takeover.
    Falls back to the measured pose when no fresh command is known."""

    def __init__(self, stale_after: float = 0.5) -> None:
        self.stale_after = stale_after
        self.commanded: Pose | None = None
        self.commanded_time: float | None = None
        self.gripper: float | None = None
        self.measured: Pose | None = None
        self.measured_time: float | None = None

    def set_commanded(self, pose: Pose, now: float) -> bool:
        if not (is_finite(pose.position) and is_finite(pose.orientation)):
            return False
        self.commanded, self.commanded_time = pose, now
        return True

    def set_measured(self, pose: Pose, now: float) -> bool:
        if not (is_finite(pose.position) and is_finite(pose.orientation)):
            return False
        self.measured, self.measured_time = pose, now
        return True

    def set_gripper(self, opening: float) -> None:
        if math.isfinite(opening):
            self.gripper = min(1.0, max(0.0, float(opening)))

    def measured_fresh(self, now: float) -> Pose | None:
        if self.measured is None or now - self.measured_time > self.stale_after:
            return None
        return self.measured

    def anchor(self, now: float) -> tuple[Pose | None, str]:
        """(pose, source): the commanded pose when fresh, else the measured one."""
        if self.commanded is not None and now - self.commanded_time <= self.stale_after:
            return self.commanded, 'commanded'
        if self.measured is not None:
            return self.measured, 'measured'
        if self.commanded is not None:
            return self.commanded, 'commanded-stale'
        return None, 'none'


@dataclass
class Segment:
    """One intervention inside an episode (times in seconds, node clock)."""

    start: float
    end: float | None = None
    policy_alive: bool = True

    @property
    def duration(self) -> float:
        return 0.0 if self.end is None else max(0.0, self.end - self.start)

    def to_json(self) -> dict[str, Any]:
        return {'start': self.start, 'end': self.end, 'duration': self.duration,
                'policy_alive': self.policy_alive}


EPISODE_STATUSES = ('recording', 'stopped', 'saved', 'discarded')


@dataclass
class Episode:
    name: str
    mode: Mode
    start_time: float
    end_time: float | None = None
    status: str = 'recording'
    segments: list[Segment] = field(default_factory=list)
    success: bool | None = None
    success_source: str | None = None   # 'operator' | 'task_state'

    def open_segment(self, now: float, policy_alive: bool) -> None:
        if not self.segments or self.segments[-1].end is not None:
            self.segments.append(Segment(now, None, policy_alive))

    def close_segment(self, now: float) -> Segment | None:
        if self.segments and self.segments[-1].end is None:
            self.segments[-1].end = now
            return self.segments[-1]
        return None

    def interventions(self) -> dict[str, Any]:
        durations = [s.duration for s in self.segments]
        return {'count': len(self.segments),
                'total_duration': sum(durations),
                'durations': durations,
                'without_policy': sum(1 for s in self.segments if not s.policy_alive),
                'segments': [s.to_json() for s in self.segments]}


class EpisodeError(ValueError):
    """A request that does not fit the episode state (answered, never raised to ROS)."""


class EpisodeLifecycle:
    """start → recording → stop → stopped → save | discard. The most recent episode stays
    addressable (label, discard) until the next one starts; starting a new episode while the
    previous one awaits a decision saves it, so nothing is lost by forgetting to press save."""

    def __init__(self, mode: Mode | str) -> None:
        self.mode = Mode(mode)
        self.current: Episode | None = None

    @property
    def recording(self) -> bool:
        return self.current is not None and self.current.status == 'recording'

    def start(self, name: str, now: float, human: bool, policy_alive: bool
              ) -> tuple[Episode, Episode | None]:
        """Returns (new episode, previous episode auto-saved now or None)."""
        if self.recording:
            raise EpisodeError(f'episode {self.current.name!r} is already recording; stop it first')
        previous = None
        if self.current is not None and self.current.status == 'stopped':
            self.current.status = 'saved'
            previous = self.current
        episode = Episode(name, self.mode, now)
        if self.mode is Mode.DAGGER and human:
            episode.open_segment(now, policy_alive)
        self.current = episode
        return episode, previous

    def stop(self, now: float) -> Episode:
        if not self.recording:
            raise EpisodeError('no episode is recording')
        episode = self.current
        episode.close_segment(now)
        episode.end_time = now
        episode.status = 'stopped'
        return episode

    def save(self, now: float) -> Episode:
        episode = self._last('save')
        if episode.status == 'recording':
            self.stop(now)
        if episode.status == 'discarded':
            raise EpisodeError(f'episode {episode.name!r} was discarded')
        episode.status = 'saved'
        return episode

    def discard(self, now: float) -> Episode:
        episode = self._last('discard')
        if episode.status == 'recording':
            self.stop(now)
        if episode.status == 'discarded':
            raise EpisodeError(f'episode {episode.name!r} is already discarded')
        episode.status = 'discarded'
        return episode

    def label(self, success: bool, source: str) -> Episode:
        """An operator label always wins over an automatic one."""
        episode = self._last('label')
        if episode.status == 'discarded':
            raise EpisodeError(f'episode {episode.name!r} was discarded')
        if source == 'operator' or episode.success_source != 'operator':
            episode.success, episode.success_source = bool(success), source
        return episode

    def on_transition(self, transition: Transition) -> Segment | None:
        """Open/close intervention segments of the recording episode. Returns a closed one."""
        if not self.recording or self.mode is not Mode.DAGGER:
            return None
        if transition.human:
            self.current.open_segment(transition.time, transition.policy_alive)
            return None
        return self.current.close_segment(transition.time)

    def _last(self, action: str) -> Episode:
        if self.current is None:
            raise EpisodeError(f'nothing to {action}: no episode has been started')
        return self.current
