"""BridgeCore: watchdog, authority switching, e-stop, conflicts — driven tick by tick in
simulated time, checking the property that matters: the output never jumps."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from bc_robot.core.bridge import (POLICY, TELEOP, BridgeConfig, BridgeCore, Mode, RateMeter)
from bc_robot.core.gate import GateLimits, GateRejection
from bc_robot.core.pose import Pose, quat_angle, rotvec_to_quat

DOWN = np.array([1.0, 0.0, 0.0, 0.0])
HOME = np.array([0.45, 0.0, 0.30])
DT = 0.01  # 100 Hz output
SNAN = struct.unpack('<d', struct.pack('<Q', 0x7FF0000000000001))[0]


class Rig:
    """A core plus a crude arm that tracks the output with a first-order lag, and a log of
    every output so tests can check steps."""

    def __init__(self, config: BridgeConfig = BridgeConfig(), limits: GateLimits = GateLimits()):
        self.core = BridgeCore(limits, config)
        self.limits = limits
        self.t = 0.0
        self.arm = Pose(HOME.copy(), DOWN)
        self.outputs: list[tuple[float, Mode, Pose | None, float | None]] = []
        self.measured_alive = True

    def step(self, n: int = 1, policy=None, teleop=None, every: int = 5) -> None:
        """Advance n ticks; `policy`/`teleop` are callables t → (position, orientation)
        published every `every` ticks (20 Hz by default)."""
        for _ in range(n):
            self.t = round(self.t + DT, 9)
            tick = round(self.t / DT)
            if self.measured_alive:
                self.core.on_measured(self.arm.position, self.arm.orientation, self.t)
            for source, fn in ((POLICY, policy), (TELEOP, teleop)):
                if fn is not None and tick % every == 0:
                    position, orientation = fn(self.t)
                    try:
                        self.core.on_target(source, np.asarray(position), np.asarray(orientation),
                                            self.t, stamp=self.t)
                    except GateRejection:
                        pass
            out = self.core.tick(self.t)
            self.outputs.append((self.t, out.mode, out.pose, out.gripper))
            if out.pose is not None:
                self.arm = Pose(self.arm.position + 0.3 * (out.pose.position - self.arm.position),
                                out.pose.orientation)

    def poses(self) -> list[Pose]:
        return [p for _, _, p, _ in self.outputs if p is not None]

    def max_steps(self) -> tuple[float, float]:
        poses = self.poses()
        lin = max((np.linalg.norm(b.position - a.position) for a, b in zip(poses, poses[1:])),
                  default=0.0)
        ang = max((quat_angle(a.orientation, b.orientation) for a, b in zip(poses, poses[1:])),
                  default=0.0)
        return lin, ang

    def assert_no_jump(self) -> None:
        lin, ang = self.max_steps()
        assert lin <= self.limits.max_step_translation + 1e-9, lin
        assert ang <= self.limits.max_step_rotation + 1e-9, ang

    @property
    def mode(self) -> Mode:
        return self.outputs[-1][1]

    @property
    def output(self) -> Pose:
        return self.outputs[-1][2]


def moving(speed=0.1, axis=0, start=HOME):
    """A target moving at `speed` m/s along `axis`."""
    def fn(t):
        p = start.copy()
        p[axis] += speed * t
        return p, DOWN
    return fn


def still(position):
    return lambda t: (np.asarray(position, dtype=float), DOWN)


def test_waiting_until_measured_pose_then_idle_hold():
    rig = Rig()
    out = rig.core.tick(0.0)
    assert out.mode is Mode.WAITING and out.pose is None and out.gripper is None
    rig.step(3)
    assert rig.mode is Mode.IDLE
    np.testing.assert_allclose(rig.output.position, HOME)


def test_tracking_follows_policy_smoothly():
    rig = Rig()
    rig.step(100, policy=moving(0.1))
    assert rig.mode is Mode.TRACKING
    rig.assert_no_jump()
    # Interpolated: 100 Hz output of a 20 Hz stream moves every tick, not every 5th.
    poses = rig.poses()[-40:]
    steps = [np.linalg.norm(b.position - a.position) for a, b in zip(poses, poses[1:])]
    assert min(steps) > 0.0005 and max(steps) < 0.0015  # ≈ 0.1 m/s * 10 ms
    # Lag is about one input period.
    assert rig.output.position[0] == pytest.approx(HOME[0] + 0.1 * (rig.t - 0.05), abs=2e-3)


def test_interpolation_off_steps_at_input_rate():
    rig = Rig(BridgeConfig(interpolate=False))
    rig.step(100, policy=moving(0.1))
    poses = rig.poses()[-40:]
    steps = [np.linalg.norm(b.position - a.position) for a, b in zip(poses, poses[1:])]
    assert sum(s < 1e-12 for s in steps) >= 30  # flat between 20 Hz targets


def test_faulty_stream_never_escapes_limits():
    rng = np.random.default_rng(7)
    faults = [
        lambda t: ([SNAN, 0.0, 0.3], DOWN),
        lambda t: ([0.45, float('nan'), 0.3], DOWN),
        lambda t: ([0.45, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]),
        lambda t: ([1e308, -1e308, 1e308], DOWN),
        lambda t: (HOME + [1.0, 0.0, 0.0], DOWN),
        lambda t: ([-0.0, -0.0, -0.0], [-0.0, -0.0, -0.0, 1.0]),
        lambda t: (HOME + rng.uniform(-0.5, 0.5, 3), rotvec_to_quat(rng.uniform(-3, 3, 3))),
        lambda t: ([0.45, 0.0, 0.3], [float('inf'), 0.0, 0.0, 1.0]),
    ]
    rig = Rig()
    lo, hi = np.array(rig.limits.workspace_min), np.array(rig.limits.workspace_max)

    def faulty(t):
        return faults[rng.integers(len(faults))](t)

    rig.step(600, policy=faulty, every=2)
    rig.assert_no_jump()
    for pose in rig.poses():
        assert np.all(np.isfinite(pose.as_vector()))
        assert np.all(pose.position >= lo - 1e-12) and np.all(pose.position <= hi + 1e-12)
        assert abs(np.linalg.norm(pose.orientation) - 1.0) < 1e-9
    counts = rig.core.gate.counts()
    assert counts['rejected.non_finite'] > 0 and counts['rejected.quaternion_norm'] > 0
    assert counts['clamped.workspace'] > 0 and counts['clamped.linear_step'] > 0


def test_source_goes_stale_then_holds_measured_pose():
    rig = Rig()
    rig.step(60, policy=moving(0.2))
    assert rig.mode is Mode.TRACKING
    last_target_at = rig.core.sources[POLICY].target_at
    modes = []
    for _ in range(60):
        rig.step()
        modes.append((rig.t, rig.mode))
    stale_at = next(t for t, m in modes if m is Mode.STALE)
    # Hold within stale_timeout + one tick of the last valid target.
    assert stale_at - last_target_at <= 0.2 + DT + 1e-9
    assert all(m is Mode.STALE for t, m in modes if t >= stale_at)
    rig.assert_no_jump()
    # The output settles on a fixed pose (the measured pose at the stale moment).
    tail = rig.poses()[-10:]
    assert max(np.linalg.norm(p.position - tail[-1].position) for p in tail) < 1e-12
    assert 'old' in rig.core.mode_reason


def test_nan_only_stream_goes_stale():
    rig = Rig()
    rig.step(20, policy=moving(0.1))
    rig.step(40, policy=lambda t: ([float('nan')] * 3, DOWN))
    assert rig.mode is Mode.STALE  # rejected targets do not count as fresh


def test_stale_source_recovers_without_jump():
    rig = Rig()
    rig.step(40, policy=moving(0.2))
    rig.step(40)
    assert rig.mode is Mode.STALE
    rig.step(60, policy=still(HOME + [0.08, 0.05, -0.05]))
    assert rig.mode is Mode.TRACKING
    rig.assert_no_jump()


def test_measured_pose_stale_freezes_output_and_resumes():
    rig = Rig()
    rig.step(30, policy=moving(0.1))
    rig.measured_alive = False
    rig.step(19, policy=moving(0.1))
    assert rig.mode is Mode.TRACKING  # 0.2 s not yet exceeded
    rig.step(3, policy=moving(0.1))
    assert rig.mode is Mode.FROZEN
    frozen = rig.output
    rig.step(10, policy=moving(0.1))
    assert rig.output is frozen
    assert 'measured pose' in rig.core.mode_reason
    rig.measured_alive = True
    rig.step(20, policy=moving(0.1))
    assert rig.mode is Mode.TRACKING
    rig.assert_no_jump()


def test_bad_measured_pose_is_ignored():
    rig = Rig()
    rig.step(5)
    assert not rig.core.on_measured(np.array([float('nan'), 0, 0]), DOWN, rig.t)
    assert not rig.core.on_measured(HOME, np.zeros(4), rig.t)
    np.testing.assert_allclose(rig.core.measured.position, HOME)


def test_authority_switch_mid_motion_is_bumpless():
    rig = Rig()
    policy = moving(0.3, axis=0)
    teleop = still(HOME + [-0.09, 0.09, 0.0])  # far from where the policy has taken the arm
    rig.step(40, policy=policy, teleop=teleop)
    assert rig.core.active == POLICY
    rig.core.on_intervention(True)
    rig.step(80, policy=policy, teleop=teleop)
    assert rig.core.active == TELEOP and rig.mode is Mode.TRACKING
    rig.core.on_intervention(False)
    rig.step(80, policy=policy, teleop=teleop)
    rig.assert_no_jump()
    assert rig.core.active == POLICY


def test_switch_to_silent_source_holds():
    rig = Rig()
    rig.step(30, policy=moving(0.2))
    rig.core.on_intervention(True)
    rig.step(5, policy=moving(0.2))
    assert rig.mode is Mode.IDLE and 'teleop' in rig.core.mode_reason
    rig.assert_no_jump()


def test_gripper_follows_active_source_and_holds_when_stale():
    rig = Rig()
    rig.step(1)
    assert rig.outputs[-1][3] is None  # never invent a gripper command
    rig.core.on_gripper(POLICY, 0.2, rig.t)
    rig.step(1, policy=moving(0.0), every=1)
    assert rig.outputs[-1][3] == 0.2
    rig.core.on_gripper(TELEOP, -0.0, rig.t)
    rig.core.on_intervention(True)
    rig.step(1, teleop=moving(0.0), every=1)
    assert rig.outputs[-1][3] == 0.0 and math.copysign(1.0, rig.outputs[-1][3]) == 1.0
    rig.step(40)
    assert rig.mode is Mode.STALE and rig.outputs[-1][3] == 0.0  # holds, does not open
    with pytest.raises(GateRejection):
        rig.core.on_gripper(TELEOP, SNAN, rig.t)


def test_estop_latches_holds_and_reenable_starts_from_measured():
    rig = Rig()
    rig.step(40, policy=moving(0.3))
    ok, message = rig.core.disable()
    assert ok and 'latched' in message
    rig.step(50, policy=moving(0.3))  # the policy keeps publishing: ignored
    assert rig.mode is Mode.DISABLED
    held = rig.output.position.copy()
    rig.step(10, policy=moving(0.3))
    np.testing.assert_allclose(rig.output.position, held)
    rig.assert_no_jump()
    ok, message = rig.core.enable(rig.t)
    assert ok
    rig.step(1)
    assert rig.mode is Mode.IDLE  # targets from before the enable are not followed
    np.testing.assert_allclose(rig.output.position, rig.arm.position, atol=0.005)
    rig.step(40, policy=moving(0.3))
    assert rig.mode is Mode.TRACKING
    lin, _ = rig.max_steps()
    assert lin <= rig.limits.max_step_translation + 0.006  # the enable itself restarts at measured


def test_enable_while_enabled_changes_nothing():
    rig = Rig()
    rig.step(40, policy=moving(0.3))
    ok, message = rig.core.enable(rig.t)
    assert ok and 'already' in message
    rig.step(20, policy=moving(0.3))
    assert rig.mode is Mode.TRACKING
    rig.assert_no_jump()


def test_enable_refused_without_fresh_measured_pose():
    core = BridgeCore(GateLimits(), BridgeConfig(start_enabled=False))
    ok, message = core.enable(0.0)
    assert not ok and 'measured' in message
    core.on_measured(HOME, DOWN, 0.0)
    assert core.tick(0.01).mode is Mode.DISABLED
    ok, _ = core.enable(1.0)  # measured pose is 1 s old
    assert not ok
    ok, _ = core.enable(0.05)
    assert ok and core.tick(0.06).mode is Mode.IDLE


def test_publisher_conflict_refuses_source_until_resolved():
    rig = Rig()
    rig.step(30, policy=moving(0.2))
    rig.core.set_publisher_count(POLICY, 2)
    rig.step(20, policy=moving(0.2))
    assert rig.mode is Mode.CONFLICT and '2 publishers' in rig.core.mode_reason
    assert rig.core.gate.counts()['rejected.publisher_conflict'] >= 4
    held = rig.output.position.copy()
    rig.step(10, policy=moving(0.2))
    np.testing.assert_allclose(rig.output.position, held)
    rig.core.set_publisher_count(POLICY, 1)
    rig.step(1)
    assert rig.mode is Mode.IDLE  # nothing from the conflict period is used
    rig.step(30, policy=moving(0.2))
    assert rig.mode is Mode.TRACKING
    rig.assert_no_jump()


def test_conflict_on_inactive_source_does_not_stop_active_one():
    rig = Rig()
    rig.core.set_publisher_count(TELEOP, 3)
    rig.step(30, policy=moving(0.1))
    assert rig.mode is Mode.TRACKING


def test_report_has_every_key():
    rig = Rig()
    rig.step(30, policy=moving(0.1))
    report = rig.core.report(rig.t)
    for key in ('mode', 'active_source', 'enabled', 'output_rate_hz', 'measured_age_s',
                'policy.rate_hz', 'policy.target_age_s', 'teleop.rate_hz',
                'rejected.non_finite', 'clamped.linear_step', 'policy.period_estimate_s'):
        assert key in report, key
    assert report['mode'] == 'TRACKING'
    assert report['output_rate_hz'] == pytest.approx(100.0, rel=0.05)
    assert report['policy.rate_hz'] == pytest.approx(20.0, rel=0.1)
    assert report['policy.period_estimate_s'] == pytest.approx(0.05)
    assert report['teleop.target_age_s'] == math.inf


def test_rate_meter():
    meter = RateMeter(window=1.0)
    assert meter.rate(0.0) == 0.0
    for i in range(11):
        meter.add(i * 0.1)
    assert meter.rate(1.0) == pytest.approx(10.0)
    assert meter.rate(5.0) == 0.0


@pytest.mark.parametrize('kwargs', [{'stale_timeout': 0.0}, {'measured_timeout': float('nan')},
                                    {'frame_id': ''}])
def test_config_validates(kwargs):
    with pytest.raises(ValueError):
        BridgeConfig(**kwargs)


def test_unknown_source_is_an_error():
    core = BridgeCore()
    with pytest.raises(ValueError, match="'robot'"):
        core.on_target('robot', HOME, DOWN, 0.0)


# --- pacing helpers and settings --------------------------------------------------------

def test_recent_stats():
    from bc_robot.core.bridge import RecentStats
    stats = RecentStats(size=100)
    assert math.isnan(stats.summary()['p50'])
    for v in range(200):
        stats.add(float(v))
    summary = stats.summary()
    assert summary['max'] == 199.0 and summary['p50'] == pytest.approx(149.5)


def test_settings_build_core_objects_and_runtime_changes():
    from bc_robot.core.bridge_settings import (BRIDGE_SCHEMA, config_from_params,
                                               limits_from_params, updated_limits)
    params = BRIDGE_SCHEMA.validate({'output_rate_hz': 500, 'max_linear_speed': 0.25,
                                     'stale_timeout': 0.1})
    limits = limits_from_params(params)
    assert limits.max_step_translation == pytest.approx(0.25 / 500)
    assert config_from_params(params).stale_timeout == 0.1
    changed = updated_limits(limits, {'max_angular_speed': 0.5, 'output_rate_hz': 10.0})
    assert changed.max_angular_speed == 0.5 and changed.output_rate_hz == 500.0
    with pytest.raises(ValueError, match='max_linear_speed'):
        BRIDGE_SCHEMA.validate({'max_linear_speed': 0.0})
    with pytest.raises(ValueError, match='workspace_min'):
        limits_from_params(BRIDGE_SCHEMA.validate({'workspace_min': [0.9, 0.0, 0.0]}))
