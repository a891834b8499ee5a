"""Action-chunking benchmark: every executor × injected inference delay on the simulated arm.

    .venv/bin/python bench/chunking.py --json out.json
    .venv/bin/python bench/chunking.py --executors async rtc --delays 0 300 --duration 6

The graph is the deploy graph with real processes: sim_arm (one camera) → observation_node
→ policy_node → controller_bridge → sim_arm. The policy is the code-built circle policy
(`bc_robot.runtime.testing_models`, 50 Hz, chunk 50, accepts an RTC prefix): the TCP orbits
a circle at constant speed and the phase is read from the *measured* position, so a chunk
computed from a lagging measurement disagrees with the plan it replaces, exactly the
disagreement chunk boundaries have with a trained policy. The sim, observation node and
bridge stay up; policy_node is restarted for each run and its exit dump
(`stats_path`) is analysed after a settling period:

- idle ticks: ticks with no action ready after the first action (sync stalls here)
- boundary step: target step on the first tick of a new chunk, vs the typical (median)
  per-tick step within chunks — a jump at a boundary is what the arm feels
- obs→target latency: observation stamp → first publication of an action from its chunk
- control period jitter: |period − 1/rate| of the control loop
- lock-on: seconds from the first action until every boundary stays within 1.25 × typical
  (the start from rest, which the settling period skips, shown rather than hidden)
Prints median/p99/max; never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXECUTORS = ('sync', 'ensemble', 'async', 'rtc')
CENTER = (0.45, 0.08)
PERIOD_S = 6.0
LOCK_ON_TOLERANCE = 1.25


def pct(values, scale: float = 1.0) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64) * scale
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {'n': 0, 'p50': math.nan, 'p99': math.nan, 'max': math.nan}
    return {'n': int(v.size), 'p50': float(np.median(v)), 'p99': float(np.percentile(v, 99)),
            'max': float(v.max())}


def start(module: str, params: dict, log_dir: Path, name: str) -> subprocess.Popen:
    command = [sys.executable, '-m', f'bc_robot.nodes.{module}', '--ros-args']
    for key, value in params.items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        elif isinstance(value, (list, tuple)):
            value = '[' + ','.join(str(v) for v in value) + ']'
        command += ['-p', f'{key}:={value}']
    log = open(log_dir / f'{name}.log', 'wb')
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(os.environ))


def stop(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT as Ctrl-C; once more if the first went unanswered; SIGKILL last."""
    for _ in range(2):
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout / 2)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.kill()
    return process.wait(5)


def analyse(dump: dict, settle_s: float) -> dict:
    """Figures of one run from policy_node's exit dump (the first `settle_s` after the
    first action are skipped: warm-up of the sim motion and of the delay estimate)."""
    trace = {k: np.asarray(v, dtype=np.float64) for k, v in dump['trace'].items()}
    dt = 1.0 / dump['control_rate_hz']
    state = trace['state']
    acted = np.flatnonzero(state == 0)
    if acted.size == 0:
        return {'error': 'no action was ever published'}
    first = acted[0]
    begin = first + int(round(settle_s / dt))
    window = slice(begin, len(state))
    positions = np.stack([trace['x'], trace['y'], trace['z']], axis=1)
    steps = np.full(len(state), np.nan)
    steps[1:] = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    new_chunk = trace['new_chunk'] == 1
    executing = (state == 0) & np.concatenate([[False], state[:-1] == 0])
    in_chunk = executing & ~new_chunk
    previous = np.concatenate([[2], state[:-1]])
    # a boundary while executing (the case RTC is about) vs the first action after idle
    # ticks (a stall: the arm held still while the plan's time ran on)
    boundary = new_chunk & (previous == 0) & np.isfinite(steps)
    after_idle = new_chunk & (previous == 1) & np.isfinite(steps)
    sel = np.zeros(len(state), bool)
    sel[window] = True
    typical = float(np.nanmedian(steps[in_chunk & sel])) if np.any(in_chunk & sel) else math.nan
    boundary_steps = steps[boundary & sel]
    lock_on = lock_on_seconds(steps, boundary, first, typical, dt)
    samples = dump.get('samples', {})
    ticks = trace['tick']
    # samples carry no wall time: keep the share recorded after the settling period
    def tail(name: str) -> list[float]:
        values = samples.get(name, [])
        keep = int(round(len(values) * (len(state) - begin) / max(1, len(state))))
        return values[len(values) - keep:] if keep > 0 else []
    delay = pct(tail('delay_s'), 1e3)
    return {
        'ticks': int(len(state) - begin),
        'idle_ticks': int(np.sum(state[window] == 1)),
        'missed_ticks': int(np.sum(np.clip(np.diff(ticks[window]) - 1, 0, None))),
        'startup_idle_ticks': int(first),
        'chunks': int(np.sum(new_chunk[window])),
        'typical_step_mm': 1e3 * typical,
        'boundary_step_mm': pct(boundary_steps, 1e3),
        'boundary_over_typical': (float(np.max(boundary_steps)) / typical
                                  if boundary_steps.size and typical > 0 else math.nan),
        'boundary_p50_over_typical': (float(np.median(boundary_steps)) / typical
                                      if boundary_steps.size and typical > 0 else math.nan),
        'lock_on_s': lock_on,
        'after_idle_step_mm': pct(steps[after_idle & sel], 1e3),
        'obs_to_target_ms': pct(tail('obs_to_target_s'), 1e3),
        'jitter_ms': pct(tail('jitter_s'), 1e3),
        'inference_ms': pct(tail('inference_s'), 1e3),
        'delay_ms': delay,
        'skipped_actions': pct(tail('skipped_actions')),
        'registration_ticks': pct(np.abs(tail('registration_ticks'))),
        'counters': dump['counters'],
        'published_ticks': int(len(state) - first),
    }


class Probe:
    """In-process rclpy node (spun on a joined thread) recording the policy's targets and,
    until `stop_measuring`, the measured TCP with their header stamps. The 200 Hz pose is only
    needed to calibrate the lead; listening to it during the measured runs cost ~20 % of a
    core on the machine under test."""

    def __init__(self) -> None:
        import threading

        import rclpy
        from geometry_msgs.msg import PoseStamped
        from bc_robot.nodes.executor import GroupAwareExecutor
        from rclpy.node import Node

        from bc_robot.nodes.common import COMMAND_QOS, SENSOR_QOS, stamp_to_seconds
        rclpy.init()
        self.node = Node('bench_chunking_probe')
        self.lock = threading.Lock()
        self.targets: list[tuple[float, float, float]] = []
        self.measured: list[tuple[float, float, float]] = []

        def keep(items):
            def callback(msg):
                with self.lock:
                    items.append((stamp_to_seconds(msg.header.stamp), msg.pose.position.x,
                                  msg.pose.position.y))
            return callback
        self.node.create_subscription(PoseStamped, '/bc/policy/target', keep(self.targets),
                                      COMMAND_QOS)
        self._measuring = self.node.create_subscription(
            PoseStamped, '/current_pose', keep(self.measured), SENSOR_QOS)
        self.executor = GroupAwareExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name='bench-probe')
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def stop_measuring(self) -> None:
        if self._measuring is not None:
            self.node.destroy_subscription(self._measuring)
            self._measuring = None

    def clear(self) -> None:
        with self.lock:
            self.targets.clear()
            self.measured.clear()

    def wait_first_target(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.targets:
                    return True
            time.sleep(0.05)
        return False

    def tracking_lag(self, center, skip_s: float = 2.0) -> float:
        """Seconds by which the measured TCP trails the policy's targets on the circle: the
        phase gap over the phase speed the targets actually have. The calibration run's
        chunks disagree with their plan (no lead), so rtc's blending slows the circle (to
        ~0.7 of its nominal speed here); dividing by the nominal speed underestimated the
        lag by a third, and the "consistent" policy jumped back at every async boundary."""
        with self.lock:
            targets = np.array(self.targets)
            measured = np.array(self.measured)
        if len(targets) < 20 or len(measured) < 20:
            raise RuntimeError('too few targets/poses recorded to calibrate the lead')

        def phase(rows):
            return np.unwrap(np.arctan2(rows[:, 2] - center[1], rows[:, 1] - center[0]))
        targets = targets[targets[:, 0] > targets[0, 0] + skip_s]
        order = np.argsort(measured[:, 0])
        measured_phase = np.interp(targets[:, 0], measured[order, 0], phase(measured[order]))
        target_phase = phase(targets)
        diff = np.angle(np.exp(1j * (target_phase - measured_phase)))
        speed = np.polyfit(targets[:, 0], target_phase, 1)[0]   # rad/s
        if not abs(speed) > 1e-3:
            raise RuntimeError(f'the targets did not move round the circle (phase speed '
                               f'{speed:.3g} rad/s): cannot calibrate the lead')
        return float(np.median(diff) / speed)

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.node.destroy_node()
        rclpy.try_shutdown()


def run_policy(tag: str, model: Path, executor: str, delay: float, args, work: Path,
               probe: Probe) -> dict:
    """One policy_node run; its exit dump analysed."""
    dump_path = work / f'{tag}.json'
    probe.clear()
    extra = dict(item.split('=', 1) for item in args.param)
    policy = start('policy_node', {'model': str(model), 'executor': executor,
                                   'inject_delay_ms': float(delay),
                                   'stats_path': str(dump_path), **extra}, work, tag)
    started = probe.wait_first_target(60.0)
    time.sleep(args.settle + args.duration)
    code = stop(policy)
    with probe.lock:
        received = len(probe.targets)
    if not started or code != 0 or not dump_path.exists():
        return {'executor': executor, 'inject_delay_ms': delay,
                'error': f'exit code {code}, started {started}; see {work / (tag + ".log")}'}
    figures = analyse(json.loads(dump_path.read_text()), args.settle)
    figures.update({'executor': executor, 'inject_delay_ms': delay, 'targets_received': received})
    return figures


def lock_on_seconds(steps: np.ndarray, boundary: np.ndarray, first: int, typical: float,
                    dt: float, tolerance: float = LOCK_ON_TOLERANCE) -> float:
    """Seconds from the first action to the boundary after which every boundary step stays
    within `tolerance` × typical: the start from rest, when the arm does not yet lag its
    targets by the policy's steady-state lead, so even the consistent policy's chunks
    disagree. Reported, so that the settling period hides nothing; nan if it never locks."""
    index = np.flatnonzero(boundary)
    if index.size == 0 or not typical > 0:
        return math.nan
    bad = index[steps[index] > tolerance * typical]
    if bad.size and bad[-1] == index[-1]:
        return math.nan
    return float((bad[-1] - first) * dt) if bad.size else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--executors', nargs='+', default=list(EXECUTORS), choices=EXECUTORS)
    parser.add_argument('--delays', nargs='+', type=float, default=[0, 100, 200, 300],
                        help='inject_delay_ms values')
    parser.add_argument('--rate', type=float, default=50.0, help='policy control rate (Hz)')
    parser.add_argument('--chunk', type=int, default=50, help='chunk length (actions)')
    parser.add_argument('--duration', type=float, default=8.0, help='seconds measured per run')
    parser.add_argument('--settle', type=float, default=5.0,
                        help='seconds skipped per run (the arm starts from a hold; how long '
                             'it took to lock on is reported as lock_on_s)')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='extra policy_node parameter, e.g. realtime_priority=20')
    parser.add_argument('--camera', default='front', help="camera used by the policy ('' = none)")
    parser.add_argument('--camera-rate', type=float, default=30.0)
    parser.add_argument('--render-samples', type=int, default=0,
                        help="sim_arm's anti-aliasing samples (its default, 0; 4 makes the "
                             'camera deliver ~5 ms later on a CPU)')
    parser.add_argument('--lead', type=float, default=None,
                        help='policy lead (s); default: calibrated to the tracking lag')
    parser.add_argument('--lagging', nargs='*', default=['async', 'rtc'], choices=EXECUTORS,
                        help='executors also run with a lead-0 policy (chunks disagree)')
    parser.add_argument('--json', type=Path, help='write all figures here')
    parser.add_argument('--keep', type=Path, help='keep models, logs and dumps in this folder')
    args = parser.parse_args()

    os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('MUJOCO_GL', 'egl')
    os.environ['PYTHONUNBUFFERED'] = '1'
    from bc_robot.core.spec import CameraSpec
    from bc_robot.runtime.testing_models import make_spec, write_model

    work = args.keep or Path(tempfile.mkdtemp(prefix='bench_chunking_'))
    work.mkdir(parents=True, exist_ok=True)
    cameras = [CameraSpec(args.camera, 32, 32)] if args.camera else []
    spec = make_spec(name='bench_circle', cameras=cameras, state_keys=('ee_position', 'gripper'),
                     chunk_length=args.chunk, control_rate_hz=args.rate, accepts_prefix=True)
    lagging = write_model(work / 'model_lead0', spec, function='circle', period_s=PERIOD_S,
                          center=CENTER)
    print(f'bench_chunking: {args.rate:g} Hz, chunk {args.chunk}, camera {args.camera or "none"}; '
          f'files in {work}', flush=True)

    sim_params = {'task': 'reach', 'cameras': [args.camera] if args.camera else ['front'],
                  'camera_rate': args.camera_rate if args.camera else 0.0,
                  'image_width': 96, 'image_height': 72, 'render_samples': args.render_samples}
    graph = [start('sim_arm', sim_params, work, 'sim_arm'),
             start('controller_bridge', {}, work, 'controller_bridge'),
             start('observation_node', {'model': str(lagging)}, work, 'observation_node')]
    probe = Probe()
    if args.lead is not None:
        probe.stop_measuring()
    load_start = os.getloadavg()[0]
    results, lead = [], args.lead
    try:
        if lead is None:
            run_policy('calibration', lagging, 'rtc', 0.0, args, work, probe)
            lead = round(probe.tracking_lag(CENTER), 3)
            probe.stop_measuring()
            print(f'tracking lag of the simulated arm: {1e3 * lead:.0f} ms → policy lead_s',
                  flush=True)
        consistent = write_model(work / 'model', spec, function='circle', period_s=PERIOD_S,
                                 center=CENTER, lead_s=lead)
        plan = [(e, d, consistent, 'lead') for e in args.executors for d in args.delays]
        if args.lagging:
            plan += [(e, d, lagging, 'lead0') for e in args.lagging for d in args.delays]
        for executor, delay, model, variant in plan:
            tag = f'{executor}_{int(delay)}ms_{variant}'
            figures = run_policy(tag, model, executor, delay, args, work, probe)
            figures['policy'] = 'lead matched to tracking lag' if variant == 'lead' \
                else 'no lead (chunks disagree by the tracking lag)'
            results.append(figures)
            print(summary_line(figures), flush=True)
    finally:
        probe.close()
        for process in reversed(graph):
            stop(process)
    report = {'rate_hz': args.rate, 'chunk_length': args.chunk, 'camera': args.camera,
              'camera_rate_hz': args.camera_rate, 'render_samples': args.render_samples,
              'policy_params': args.param,
              'circle': {'center': CENTER, 'radius_m': 0.08, 'period_s': PERIOD_S,
                         'lead_s': lead},
              'duration_s': args.duration, 'settle_s': args.settle,
              'machine': f'{os.cpu_count()} CPU cores',
              'load_average_1min': {'start': load_start, 'end': os.getloadavg()[0]},
              'runs': results}
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f'figures written to {args.json}')
    return 0


def summary_line(f: dict) -> str:
    if 'error' in f:
        return f'{f["executor"]:>8} {f["inject_delay_ms"]:>5.0f} ms: {f["error"]}'
    b = f['boundary_step_mm']
    return (f'{f["executor"]:>8} {f["inject_delay_ms"]:>5.0f} ms {f.get("policy", "")[:7]:7}: idle {f["idle_ticks"]:>3}/'
            f'{f["ticks"]:<4} boundary p50/max {b["p50"]:5.2f}/{b["max"]:6.2f} mm vs typical '
            f'{f["typical_step_mm"]:5.2f} mm (x{f["boundary_over_typical"]:.2f}) '
            f'lock-on {f["lock_on_s"]:4.1f} s '
            f'obs→target p50/p99 {f["obs_to_target_ms"]["p50"]:6.1f}/'
            f'{f["obs_to_target_ms"]["p99"]:6.1f} ms  jitter p99 {f["jitter_ms"]["p99"]:5.2f} ms')


def print_table(results: list[dict]) -> None:
    print('\n| policy | executor | delay ms | idle ticks | boundary step p50 / max (mm) | '
          'typical step (mm) | max / typical | lock-on (s) | after idle max (mm) | '
          'obs→target p50 / p99 / max (ms) | jitter p50 / p99 / max (ms) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for f in results:
        if 'error' in f:
            print(f'| | {f["executor"]} | {f["inject_delay_ms"]:.0f} | {f["error"]} |')
            continue
        o, j = f['obs_to_target_ms'], f['jitter_ms']
        variant = 'lead' if f.get('policy', '').startswith('lead') else 'no lead'
        print(f'| {variant} | {f["executor"]} | {f["inject_delay_ms"]:.0f} | '
              f'{f["idle_ticks"]} / {f["ticks"]} '
              f'| {f["boundary_step_mm"]["p50"]:.2f} / {f["boundary_step_mm"]["max"]:.2f} | '
              f'{f["typical_step_mm"]:.2f} | {f["boundary_over_typical"]:.2f} | '
              f'{f["lock_on_s"]:.1f} | '
              f'{f["after_idle_step_mm"]["max"]:.1f} | {o["p50"]:.1f} / {o["p99"]:.1f} / '
              f'{o["max"]:.1f} | {j["p50"]:.2f} / {j["p99"]:.2f} / {j["max"]:.2f} |')


if __name__ == '__main__':
    sys.exit(main())
