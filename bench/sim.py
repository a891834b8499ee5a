"""Simulated arm benchmark: real-time factor, physics and render rates, and tracking error
while both cameras render at the default size and rate.

    .venv/bin/python bench/sim.py --json out.json

1. In-process cost: one physics step with the impedance controller (µs), unpaced physics
   rate, one camera render (ms) — what bounds the node.
2. The node as a real process (`python -m bc_robot.nodes.sim_arm`, default parameters: 1 kHz
   physics, front + wrist 320x240 at 15 Hz, paced to wall time). This process publishes
   /target_pose (5 cm steps, then a 5 cm circle) and reads /diagnostics (achieved real-time
   factor and rates per 1 s window), the camera streams and /current_pose. Tracking error is
   |TCP − target| 1 s after each step and along the circle (which includes the lag of a
   moving target). CPU is the sim process's own use in cores.
Prints median/p99/max (and min: for rates the low tail matters); never a pass/fail. Runs on a private localhost DDS domain.
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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bc_robot.orchestrate.stats import percentiles as stats  # noqa: E402
os.environ.setdefault('MUJOCO_GL', 'egl')

DOWN = np.array([1.0, 0.0, 0.0, 0.0])
HOME = np.array([0.45, 0.0, 0.30])


def bench_in_process(steps: int, renders: int) -> dict:
    from bc_robot.sim.camera import CameraRig
    from bc_robot.sim.world import SimWorld

    world = SimWorld()
    world.step(200)
    batch = 100
    per_step = []
    for _ in range(steps // batch):
        start = time.perf_counter()
        world.step(batch)
        per_step.append((time.perf_counter() - start) / batch)
    rig = CameraRig(world.arm.model, ['front', 'wrist'], 320, 240)
    render = {'front': [], 'wrist': []}
    try:
        for _ in range(renders):
            rig.capture(world.arm.data)
            for name, renderer in rig._renderers.items():
                start = time.perf_counter()
                renderer.render()
                render[name].append(time.perf_counter() - start)
    finally:
        rig.close()
    return {'physics_step_us': stats(per_step, 1e6),
            'unpaced_physics_rate_hz': 1.0 / float(np.median(per_step)),
            'render_ms': {k: stats(v, 1e3) for k, v in render.items()}}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def bench_node(duration: float) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(random.SystemRandom().randint(101, 230)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', ROS_LOCALHOST_ONLY='1')
    os.environ.update(env)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from bc_robot.core.pose import Pose
    from bc_robot.nodes.common import (COMMAND_QOS, SENSOR_QOS, pose_to_msg, stamp_to_seconds)

    sim = subprocess.Popen([sys.executable, '-m', 'bc_robot.nodes.sim_arm'], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rclpy.init(args=[])
    node = rclpy.create_node('bench_sim')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    diags, poses, frames = [], [], {'front': [], 'wrist': []}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'sim_arm: physics':
                values = {kv.key: kv.value for kv in status.values}
                values['_wall'] = time.monotonic()
                diags.append(values)

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    node.create_subscription(PoseStamped, '/current_pose', lambda m: poses.append(
        (stamp_to_seconds(m.header.stamp),
         np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z]))), SENSOR_QOS)
    for cam in frames:
        node.create_subscription(Image, f'/camera/{cam}/image_raw',
                                 lambda m, c=cam: frames[c].append(time.monotonic()), SENSOR_QOS)
    publisher = node.create_publisher(PoseStamped, '/target_pose', COMMAND_QOS)
    try:
        deadline = time.monotonic() + 60.0
        while not poses and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        if not poses:
            raise RuntimeError('sim_arm published no pose within 60 s')
        warmup_end = time.monotonic() + 3.0
        while time.monotonic() < warmup_end:
            executor.spin_once(timeout_sec=0.05)
        diags.clear()
        for cam in frames:
            frames[cam].clear()
        cpu0, wall0 = _cpu_seconds(sim.pid), time.monotonic()
        targets = []  # (ros time, target position, kind)
        start = time.monotonic()
        next_pub = start
        steps = [np.array([0.05, 0.0, 0.0]), np.array([0.0, 0.05, -0.05]),
                 np.array([-0.05, -0.05, 0.05]), np.array([0.0, 0.0, 0.0])]
        half = duration / 2.0
        while time.monotonic() - start < duration:
            executor.spin_once(timeout_sec=0.002)
            now = time.monotonic()
            if now < next_pub:
                continue
            next_pub += 0.02  # 50 Hz
            t = now - start
            if t < half:
                kind, target = 'step', HOME + steps[int(t // 2.5) % len(steps)]
            else:
                phase = 0.5 * (t - half)
                kind, target = 'circle', HOME + 0.05 * np.array(
                    [math.cos(phase) - 1.0, math.sin(phase), 0.0])
            stamp = node.get_clock().now()
            publisher.publish(pose_to_msg(Pose(target, DOWN), 'base', stamp.to_msg()))
            targets.append((stamp.nanoseconds * 1e-9, target, kind))
        cpu = (_cpu_seconds(sim.pid) - cpu0) / (time.monotonic() - wall0)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
    return _node_figures(diags, poses, frames, targets, cpu, duration)


def _node_figures(diags, poses, frames, targets, cpu, duration) -> dict:
    times = np.array([t for t, _, _ in targets])
    circle_err, step_err = [], []
    for stamp, position in poses:
        i = int(np.searchsorted(times, stamp)) - 1
        if i >= 0 and targets[i][2] == 'circle' and stamp - times[0] > duration / 2 + 1.0:
            circle_err.append(np.linalg.norm(position - targets[i][1]))
    # 1 s after each step change: the first pose stamped at or after change + 1 s.
    pose_times = np.array([t for t, _ in poses])
    for i in range(1, len(targets)):
        if targets[i][2] == 'step' and not np.array_equal(targets[i][1], targets[i - 1][1]):
            j = int(np.searchsorted(pose_times, targets[i][0] + 1.0))
            if j < len(poses):
                step_err.append(np.linalg.norm(poses[j][1] - targets[i][1]))
    key = lambda k: [float(d[k]) for d in diags if k in d]  # noqa: E731
    intervals = {c: np.diff(v) for c, v in frames.items()}
    overall = math.nan
    if len(diags) > 1:
        overall = (float(diags[-1]['sim_time']) - float(diags[0]['sim_time'])) / \
            (diags[-1]['_wall'] - diags[0]['_wall'])
    return {
        'real_time_factor_overall': overall,
        'real_time_factor': stats(key('real_time_factor')),
        'physics_rate_hz': stats(key('physics_rate_hz')),
        'state_rate_hz': stats(key('state_rate_hz')),
        'render_rate_hz': {c: stats(key(f'{c}_rate_hz')) for c in frames},
        'received_frame_interval_ms': {c: stats(v, 1e3) for c, v in intervals.items()},
        'tracking_error_1s_after_5cm_step_mm': stats(step_err, 1e3),
        'tracking_error_circle_2.5cm_per_s_mm': stats(circle_err, 1e3),
        'sim_process_cpu_cores': cpu,
        'pacer_resyncs': int(diags[-1]['pacer_resyncs']) if diags else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--duration', type=float, default=20.0, help='node phase, seconds')
    parser.add_argument('--steps', type=int, default=20000, help='in-process physics steps')
    parser.add_argument('--renders', type=int, default=60, help='in-process renders per camera')
    parser.add_argument('--json', help='write the figures here')
    args = parser.parse_args()
    results = {'in_process': bench_in_process(args.steps, args.renders),
               'node': bench_node(args.duration),
               'machine': {'cpus': os.cpu_count(), 'load_avg_1min': os.getloadavg()[0]}}

    def show(prefix: str, value) -> None:
        if isinstance(value, dict) and 'p50' in value:
            print(f'{prefix:52s} median {value["p50"]:8.3f}  p99 {value["p99"]:8.3f}  '
                  f'max {value["max"]:8.3f}  min {value.get("min", math.nan):8.3f}  '
                  f'(n={value["n"]})')
        elif isinstance(value, dict):
            for k, v in value.items():
                show(f'{prefix}.{k}' if prefix else k, v)
        else:
            print(f'{prefix:52s} {value:.4g}' if isinstance(value, float) else
                  f'{prefix:52s} {value}')

    show('', results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
