"""Authority state machine, pedal filtering, bumpless handover and episode bookkeeping."""
import numpy as np
import pytest

from bc_robot.core.authority import (Authority, CommandedPose, EpisodeError, EpisodeLifecycle,
                                     Mode, PedalConfig, PedalFilter, State)
from bc_robot.core.pose import Pose
from bc_robot.core.teleop import TeleopConfig, TeleopIntegrator, VelocityCommand

HOME = Pose(np.array([0.45, 0.0, 0.30]), np.array([1.0, 0.0, 0.0, 0.0]))


def run_pedal(authority, samples, tick=0.01):
    """Feed (time, raw) samples and tick at 100 Hz in between; return transitions."""
    transitions = []
    end = samples[-1][0] + 2.0
    pending = list(samples)
    t = 0.0
    while t <= end:
        while pending and pending[0][0] <= t + 1e-9:
            _, raw = pending.pop(0)
            tr = authority.on_pedal(raw, t)
            if tr:
                transitions.append(tr)
        tr = authority.tick(t)
        if tr:
            transitions.append(tr)
        t = round(t + tick, 6)
    return transitions


def test_hold_pedal_takes_over_immediately_and_returns_after_release_delay():
    auth = Authority(Mode.DAGGER, PedalConfig('hold', release_delay=0.15))
    auth.policy_seen(0.0)
    auth.set_episode(True)
    assert auth.state is State.AUTONOMOUS and not auth.human
    tr = auth.on_pedal(True, 1.0)
    assert tr is not None and tr.human and tr.state is State.INTERVENING and tr.time == 1.0
    assert auth.on_pedal(False, 2.0) is None             # still down during the delay
    assert auth.tick(2.1) is None
    tr = auth.tick(2.16)
    assert tr is not None and not tr.human and tr.state is State.AUTONOMOUS


def test_pedal_chatter_at_100hz_gives_one_intervention():
    """A bouncing switch toggling every 10 ms for 1 s, then released for good."""
    auth = Authority(Mode.DAGGER, PedalConfig('hold', release_delay=0.15))
    auth.policy_seen(0.0)
    samples = [(1.0 + 0.01 * k, k % 2 == 0) for k in range(100)] + [(2.0, False)]
    transitions = run_pedal(auth, samples)
    assert [t.human for t in transitions] == [True, False]
    assert transitions[0].time == pytest.approx(1.0)
    assert transitions[1].time == pytest.approx(2.0 + 0.15, abs=0.011)
    assert auth.pedal.bounces >= 45


def test_toggle_pedal_ignores_bounce_on_press_and_release():
    auth = Authority(Mode.DAGGER, PedalConfig('toggle', toggle_debounce=0.3))
    auth.policy_seen(0.0)
    press = [(1.0, True), (1.01, False), (1.02, True), (1.03, False), (1.04, True)]
    release = [(2.0, False), (2.01, True), (2.02, False)]            # bounce on release
    second = [(3.0, True), (3.01, False), (3.02, True), (3.5, False)]
    transitions = run_pedal(auth, press + release + second)
    assert [(t.human, round(t.time, 2)) for t in transitions] == [(True, 1.0), (False, 3.0)]


def test_demo_mode_human_always_drives_and_pedal_is_ignored():
    auth = Authority(Mode.DEMO, PedalConfig())
    assert auth.human and auth.state is State.IDLE
    auth.set_episode(True)
    assert auth.state is State.DEMO
    assert auth.on_pedal(True, 1.0) is None
    assert auth.on_pedal(False, 1.5) is None and auth.tick(3.0) is None
    assert auth.human and auth.pedal_ignored == 1


def test_pedal_while_no_policy_runs_gives_the_human_control_flagged():
    auth = Authority(Mode.DAGGER, PedalConfig(release_delay=0.0), policy_timeout=0.5)
    episodes = EpisodeLifecycle(Mode.DAGGER)
    episodes.start('ep', 0.0, human=False, policy_alive=False)
    auth.set_episode(True)
    tr = auth.on_pedal(True, 1.0)            # no policy target ever arrived
    assert tr.human and tr.policy_alive is False
    episodes.on_transition(tr)
    tr = auth.on_pedal(False, 2.0)
    assert tr is not None and not tr.human and auth.state is State.AUTONOMOUS
    episodes.on_transition(tr)
    stats = episodes.current.interventions()
    assert stats['count'] == 1 and stats['without_policy'] == 1
    # with a live policy the same press is a real correction
    auth.policy_seen(2.9)
    assert auth.on_pedal(True, 3.0).policy_alive is True


def test_bumpless_handover_first_human_target_is_the_commanded_pose():
    """Policy has been driving; the bridge last commanded P. Takeover starts exactly at P,
    not at the lagging measured pose, and moves at most v·dt per tick."""
    commanded = CommandedPose(stale_after=0.5)
    measured = Pose(np.array([0.44, 0.01, 0.31]), HOME.orientation)
    P = Pose(np.array([0.47, -0.02, 0.28]), np.array([0.9995, 0.0, 0.0316, 0.0]) /
             np.linalg.norm([0.9995, 0.0, 0.0316, 0.0]))
    commanded.set_measured(measured, 4.99)
    commanded.set_commanded(P, 4.995)
    commanded.set_gripper(0.25)
    pose, source = commanded.anchor(5.0)
    assert source == 'commanded'
    integ = TeleopIntegrator(TeleopConfig())
    integ.set_command(VelocityCommand(np.array([0.15, 0.0, 0.0]), np.zeros(3)), 4.0)  # held
    integ.anchor(pose, commanded.gripper, 5.0)
    first = integ.step(5.0, measured)
    assert np.array_equal(first.position, P.position)
    assert np.allclose(first.orientation, P.orientation)
    assert integ.gripper == 0.25
    second = integ.step(5.02, measured)
    assert np.linalg.norm(second.position - first.position) <= 0.15 * 0.02 + 1e-12


def test_anchor_falls_back_to_measured_when_command_is_stale_or_nan():
    commanded = CommandedPose(stale_after=0.5)
    assert commanded.anchor(0.0) == (None, 'none')
    commanded.set_commanded(HOME, 0.0)
    commanded.set_measured(Pose(np.array([0.5, 0, 0.3]), HOME.orientation), 0.9)
    assert commanded.anchor(1.0)[1] == 'measured'
    bad = Pose(np.array([np.nan, 0, 0]), HOME.orientation)
    assert commanded.set_commanded(bad, 1.0) is False
    assert commanded.anchor(1.0)[1] == 'measured'


def test_pedal_config_refuses_bad_values():
    with pytest.raises(ValueError, match='style'):
        PedalConfig('stomp')
    with pytest.raises(ValueError, match='release_delay'):
        PedalConfig('hold', release_delay=-1)


def test_pedal_filter_first_sample_pressed_counts():
    pedal = PedalFilter(PedalConfig('toggle'))
    assert pedal.update(True, 0.0) is True


def test_lifecycle_start_stop_save_discard_and_labels():
    life = EpisodeLifecycle(Mode.DEMO)
    with pytest.raises(EpisodeError, match='no episode'):
        life.stop(0.0)
    with pytest.raises(EpisodeError, match='nothing to save'):
        life.save(0.0)
    ep, previous = life.start('a', 1.0, human=True, policy_alive=False)
    assert previous is None and life.recording
    with pytest.raises(EpisodeError, match='already recording'):
        life.start('b', 1.5, True, False)
    life.label(True, 'operator')
    life.stop(3.0)
    life.label(False, 'task_state')                  # never overrides the operator
    assert ep.success is True and ep.success_source == 'operator'
    assert ep.status == 'stopped' and ep.end_time == 3.0
    ep2, previous = life.start('b', 4.0, True, False)  # stopped 'a' is kept, not lost
    assert previous is ep and ep.status == 'saved'
    life.discard(5.0)                                  # discard while recording stops first
    assert ep2.status == 'discarded' and ep2.end_time == 5.0
    with pytest.raises(EpisodeError, match='discarded'):
        life.save(6.0)


def test_dagger_episode_segments_and_episode_starting_during_intervention():
    auth = Authority(Mode.DAGGER, PedalConfig(release_delay=0.1))
    life = EpisodeLifecycle(Mode.DAGGER)
    auth.policy_seen(0.0)
    life.on_transition(auth.on_pedal(True, 0.5))      # before any episode: not counted
    life.start('ep', 1.0, human=auth.human, policy_alive=True)   # starts intervening
    auth.set_episode(True)
    assert auth.state is State.INTERVENING
    auth.on_pedal(False, 1.5)
    life.on_transition(auth.tick(1.6))
    auth.policy_seen(2.0)
    life.on_transition(auth.on_pedal(True, 2.0))
    life.stop(2.5)                                    # stop while intervening closes it
    stats = life.current.interventions()
    assert stats['count'] == 2
    assert stats['durations'] == pytest.approx([0.6, 0.5])
