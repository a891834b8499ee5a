"""Controller bridge benchmark: per-tick cost of the gate + interpolation, and the output
period jitter seen by a subscriber in another process, at 100 and 500 Hz.

    .venv/bin/python bench/bridge.py --json out.json

Three kinds of process take part in the jitter measurement, as on a robot PC: the bridge
(`python -m bc_robot.nodes.controller_bridge`), a feeder (this process: /current_pose at
200 Hz and a 20 Hz policy stream, so the bridge is TRACKING and interpolating) and a
recorder (this script with --record) that does nothing but timestamp /target_pose arrivals,
twice: when the middleware received each message (MessageInfo.received_timestamp, "DDS") and
when the recorder's Python callback ran ("cb", which adds the recorder's own executor
latency). Jitter is |interval − nominal period|. Prints median/p99/max; never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bc_robot.orchestrate.stats import percentiles as stats  # noqa: E402

DOWN = np.array([1.0, 0.0, 0.0, 0.0])
HOME = np.array([0.45, 0.0, 0.30])


def policy_target(t: float) -> np.ndarray:
    """A slow circle inside the workspace: the bridge interpolates and rarely clamps."""
    return HOME + 0.05 * np.array([math.cos(0.5 * t) - 1.0, math.sin(0.5 * t), 0.0])


# --- 1. cost per tick ------------------------------------------------------------------

def bench_cost(ticks: int) -> dict:
    """Wall time and thread CPU time of each `BridgeCore.tick` (interpolation + gate) and each
    `on_target` (the admit rules). CPU time excludes time the thread spent preempted, so it
    is the cost itself even on a loaded machine; wall time is what a tick takes there."""
    from bc_robot.core.bridge import POLICY, BridgeCore
    from bc_robot.core.gate import GateLimits

    core = BridgeCore(GateLimits(output_rate_hz=100.0))
    tick_wall, tick_cpu, admit_wall, admit_cpu = [], [], [], []
    for i in range(ticks + 200):
        t = i * 0.01
        core.on_measured(core.previous_output.position if core.previous_output else HOME, DOWN, t)
        if i % 5 == 0:
            wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
            core.on_target(POLICY, policy_target(t), DOWN, t, stamp=t)
            admit_cpu.append(time.thread_time_ns() - cpu)
            admit_wall.append(time.perf_counter_ns() - wall)
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        core.tick(t)
        cpu = time.thread_time_ns() - cpu
        wall = time.perf_counter_ns() - wall
        if i >= 200:  # warm-up excluded
            tick_wall.append(wall)
            tick_cpu.append(cpu)
    assert core.mode.value == 'TRACKING', core.mode
    return {'tick_cpu_ms': stats(tick_cpu, 1e-6), 'tick_wall_ms': stats(tick_wall, 1e-6),
            'admit_cpu_ms': stats(admit_cpu[40:], 1e-6),
            'admit_wall_ms': stats(admit_wall[40:], 1e-6)}


# --- 2. output period jitter -------------------------------------------------------------

def record(topic: str, seconds: float, out: str) -> int:
    """Recorder process: arrival times (and header stamps) of `topic` for `seconds`."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from bc_robot.nodes.common import COMMAND_QOS, stamp_to_seconds

    rclpy.init()
    node = Node('bench_bridge_recorder')
    arrivals, stamps, received = [], [], []

    def on_msg(msg, info):  # two parameters: rclpy passes the middleware's MessageInfo
        arrivals.append(time.perf_counter())
        received.append(info['received_timestamp'] * 1e-9)
        stamps.append(stamp_to_seconds(msg.header.stamp))

    node.create_subscription(PoseStamped, topic, on_msg, COMMAND_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    first_deadline = time.monotonic() + 30.0
    while not arrivals and time.monotonic() < first_deadline:
        executor.spin_once(timeout_sec=0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    Path(out).write_text(json.dumps({'arrivals': arrivals, 'stamps': stamps,
                                     'received': received}))
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def bench_jitter(rate: float, clock: str, seconds: float, env: dict, workdir: Path,
                 priority: int = 0, recorder_priority: int = 0) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node

    from bc_robot.core.pose import Pose
    from bc_robot.nodes.common import COMMAND_QOS, SENSOR_QOS, pose_to_msg

    out = workdir / f'arrivals_{int(rate)}_{clock}_{priority}.json'
    bridge = subprocess.Popen(
        [sys.executable, '-m', 'bc_robot.nodes.controller_bridge', '--ros-args',
         '-p', f'output_rate_hz:={rate}', '-p', f'output_clock:={clock}',
         '-p', f'realtime_priority:={priority}'],
        env=env, cwd=REPO, stdout=open(workdir / f'bridge_{int(rate)}_{clock}_{priority}.log', 'w'),
        stderr=subprocess.STDOUT)
    # A robot's controller reads /target_pose in a real-time process; --recorder-priority
    # runs the measuring subscriber likewise, so its own preemption is not counted as jitter.
    elevate = ['chrt', '-f', str(recorder_priority)] if recorder_priority else []
    recorder = subprocess.Popen(
        [*elevate, sys.executable, __file__, '--record', '/target_pose', str(seconds), str(out)],
        env=env, cwd=REPO)
    node = Node('bench_bridge_feeder')
    pub_pose = node.create_publisher(PoseStamped, '/current_pose', SENSOR_QOS)
    pub_target = node.create_publisher(PoseStamped, '/bc/policy/target', COMMAND_QOS)
    start = time.monotonic()
    tick = 0
    publishers = []
    try:
        # Feed until the recorder is done: measured pose at 200 Hz, policy at 20 Hz.
        next_time = time.monotonic()
        while recorder.poll() is None and time.monotonic() - start < seconds + 60:
            stamp = node.get_clock().now().to_msg()
            pub_pose.publish(pose_to_msg(Pose(HOME, DOWN), 'base', stamp))
            if tick % 10 == 0:
                t = time.monotonic() - start
                pub_target.publish(pose_to_msg(Pose(policy_target(t), DOWN), 'base', stamp))
            tick += 1
            if tick % 200 == 0:
                publishers.append(node.count_publishers('/target_pose'))
            next_time += 0.005
            time.sleep(max(0.0, next_time - time.monotonic()))
    finally:
        bridge.send_signal(2)
        bridge.wait(timeout=20)
        recorder.wait(timeout=20)
        node.destroy_node()
    if max(publishers, default=1) > 1:
        raise RuntimeError(f'{max(publishers)} publishers on /target_pose: another graph shares '
                           f'ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}; pick another')
    data = json.loads(out.read_text())
    arrivals, stamps = np.array(data['arrivals']), np.array(data['stamps'])
    received = np.array(data['received'])
    period = 1.0 / rate
    intervals = np.diff(arrivals)
    stamp_intervals = np.diff(stamps)
    return {
        'rate_hz': rate, 'output_clock': clock, 'realtime_priority': priority,
        'recorder_priority': recorder_priority, 'messages': int(arrivals.size),
        'measured_rate_hz': float((arrivals.size - 1) / (arrivals[-1] - arrivals[0]))
        if arrivals.size > 1 else 0.0,
        'jitter_ms': stats(np.abs(intervals - period), 1e3),
        'period_ms': stats(intervals, 1e3),
        'stamp_jitter_ms': stats(np.abs(stamp_intervals - period), 1e3),
        'receive_jitter_ms': stats(np.abs(np.diff(received) - period), 1e3),
    }


def quiet_domain(tries: int = 8) -> int:
    """A DDS domain with nobody else on it: another bridge publishing /target_pose on the
    same domain (a test run, say) would corrupt the jitter figures."""
    import rclpy
    from rclpy.node import Node
    for _ in range(tries):
        domain = random.SystemRandom().randint(1, 100)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        node = Node('bench_bridge_probe', context=context)
        time.sleep(1.5)  # discovery
        others = [n for n in node.get_node_names() if n != 'bench_bridge_probe']
        node.destroy_node()
        rclpy.shutdown(context=context)
        if not others:
            return domain
    raise RuntimeError('no quiet DDS domain found; set ROS_DOMAIN_ID to an unused one')


def print_stats(label: str, s: dict) -> None:
    print(f'  {label:<34} median {s["p50"]:8.4f}  p99 {s["p99"]:8.4f}  max {s["max"]:8.4f}'
          f'  (n={s["n"]})')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write the figures here')
    parser.add_argument('--ticks', type=int, default=20000, help='ticks for the cost benchmark')
    parser.add_argument('--seconds', type=float, default=10.0, help='recording per jitter run')
    parser.add_argument('--rates', type=float, nargs='+', default=[100.0, 500.0])
    parser.add_argument('--clocks', nargs='+', default=['thread', 'timer'],
                        choices=['thread', 'timer'])
    parser.add_argument('--priority', type=int, default=0,
                        help='also run output_clock=thread with this SCHED_FIFO priority')
    parser.add_argument('--recorder-priority', type=int, default=0,
                        help='run the measuring subscriber under SCHED_FIFO at this priority '
                             '(chrt; needs root or an rtprio limit)')
    parser.add_argument('--record', nargs=3, metavar=('TOPIC', 'SECONDS', 'OUT'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record:
        return record(args.record[0], float(args.record[1]), args.record[2])

    results: dict = {'machine': {'cpus': os.cpu_count(), 'load_avg': os.getloadavg()}}
    print(f'bridge cost per tick ({args.ticks} ticks, 20 Hz policy, 100 Hz output), ms:')
    results['cost'] = bench_cost(args.ticks)
    print_stats('gate + interpolation per tick, CPU', results['cost']['tick_cpu_ms'])
    print_stats('gate + interpolation per tick, wall', results['cost']['tick_wall_ms'])
    print_stats('admit (gate) per target, CPU', results['cost']['admit_cpu_ms'])
    print_stats('admit (gate) per target, wall', results['cost']['admit_wall_ms'])

    import rclpy
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if 'ROS_DOMAIN_ID' not in os.environ:
        os.environ['ROS_DOMAIN_ID'] = str(quiet_domain())
    print(f'ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}')
    env = dict(os.environ)
    workdir = Path(os.environ.get('TMPDIR', '/tmp')) / f'bench_bridge_{os.getpid()}'
    workdir.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    results['jitter'] = []
    try:
        variants = [(clock, 0) for clock in args.clocks]
        if args.priority:
            variants.append(('thread', args.priority))
        for rate in args.rates:
            for clock, priority in variants:
                r = bench_jitter(rate, clock, args.seconds, env, workdir, priority,
                                 args.recorder_priority)
                results['jitter'].append(r)
                print(f'output period jitter at {rate:g} Hz, output_clock={clock}, '
                      f'realtime_priority={priority} '
                      f'recorder_priority={args.recorder_priority} '
                      f'({r["measured_rate_hz"]:.1f} Hz received), ms:')
                print_stats('|interval - period| (subscriber cb)', r['jitter_ms'])
                print_stats('|interval - period| (subscriber DDS)', r['receive_jitter_ms'])
                print_stats('|stamp interval - period| (bridge)', r['stamp_jitter_ms'])
    finally:
        rclpy.try_shutdown()
    results['machine']['load_avg_after'] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
