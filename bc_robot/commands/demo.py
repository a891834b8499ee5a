"""`bc-robot demo` (`make demo`): the simulated arm with the scripted expert, no robot needed.

Starts `sim_arm` and `sim_expert` (direct mode) as real ROS 2 processes, lets the expert run
a few `push` episodes, saves camera frames as PNG and prints the success rate. This is the
interim demo: deploying a trained policy on the simulated arm is not part of it yet.

It runs on a private DDS domain restricted to localhost unless --domain-id is given, so a
demo never publishes /joint_states or /target_pose onto a network where a real arm listens.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

NOTE = ('note: this demo runs the simulated arm with the scripted expert only; deploying a '
        'trained policy is not part of it yet.')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--episodes', type=int, default=3, help='push episodes to run (1-50)')
    parser.add_argument('--output', default='out/demo',
                        help='folder for PNG frames, logs and summary.json (default out/demo)')
    parser.add_argument('--seed', type=int, default=0, help='base scene seed (episode k uses seed + k)')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID to use (default: a private random one, localhost)')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='wall seconds allowed per episode before the demo gives up')


def _node(module: str, params: dict, log: Path, env: dict) -> subprocess.Popen:
    command = [sys.executable, '-m', module, '--ros-args']
    for key, value in params.items():
        text = ('true' if value else 'false') if isinstance(value, bool) else str(value)
        command += ['-p', f'{key}:={text}']
    return subprocess.Popen(command, stdout=open(log, 'wb'), stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.episodes <= 50:
        print(f'bc-robot demo: --episodes must be in [1, 50], got {args.episodes}',
              file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f'bc-robot demo: --seed must be >= 0, got {args.seed}', file=sys.stderr)
        return 2
    out = Path(args.output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / 'summary.json'
    summary_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault('MUJOCO_GL', 'egl')
    if args.domain_id is None:
        env['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(101, 230))
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        env['ROS_LOCALHOST_ONLY'] = '1'
    else:
        env['ROS_DOMAIN_ID'] = str(args.domain_id)
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'MUJOCO_GL')})
    for key in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY'):
        if key in env:
            os.environ[key] = env[key]
    print(f'bc-robot demo: sim_arm + sim_expert (direct mode), {args.episodes} push episodes, '
          f'ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}; output in {out}')
    print(NOTE)

    sim = _node('bc_robot.nodes.sim_arm', {'seed': args.seed + 0, 'task': 'push'},
                out / 'sim_arm.log', env)
    expert = _node('bc_robot.nodes.sim_expert', {
        'mode': 'direct', 'episodes': args.episodes, 'exit_when_done': True,
        'summary_path': str(summary_path)}, out / 'sim_expert.log', env)
    try:
        frames = _watch(expert, summary_path, out, args.episodes * args.timeout + 60.0)
    finally:
        _stop(expert)
        _stop(sim)
    if not summary_path.is_file():
        print('bc-robot demo: the expert finished no episode; see '
              f'{out / "sim_arm.log"} and {out / "sim_expert.log"}', file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    for result in summary['results']:
        print(f'  episode {result["episode"]} (seed {result["seed"]}, {result["side"]} side): '
              f'{"success" if result["success"] else "failed"} in {result["duration"]:.1f} s, '
              f'cube {100 * result["final_distance"]:.1f} cm from the goal')
    print(f'success rate: {summary["successes"]}/{summary["episodes"]} '
          f'({100 * summary["success_rate"]:.0f} %)')
    print(f'frames: {", ".join(str(f.relative_to(out)) for f in frames) or "none"} in {out}')
    print(NOTE)
    return 0 if summary['episodes'] == args.episodes else 1


def _watch(expert: subprocess.Popen, summary_path: Path, out: Path, timeout: float) -> list[Path]:
    """Spin a small subscriber node until the expert exits; save front and wrist frames at
    the start and after every episode."""
    import cv2
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from bc_robot.nodes.common import SENSOR_QOS

    latest: dict[str, Image] = {}
    saved: list[Path] = []

    def save(tag: str) -> None:
        for camera, msg in sorted(latest.items()):
            rgb = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3)
            path = out / f'{tag}_{camera}.png'
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            saved.append(path)

    rclpy.init(args=[])
    node = rclpy.create_node('bc_robot_demo')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        for camera in ('front', 'wrist'):
            node.create_subscription(Image, f'/camera/{camera}/image_raw',
                                     lambda m, c=camera: latest.__setitem__(c, m), SENSOR_QOS)
        deadline = time.monotonic() + timeout
        done_episodes, started = 0, False
        while expert.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if not started and len(latest) == 2:
                save('start')
                started = True
            if summary_path.is_file():
                try:
                    count = json.loads(summary_path.read_text())['episodes']
                except (ValueError, KeyError):
                    continue  # being replaced right now; read it on the next pass
                if count > done_episodes and latest:
                    done_episodes = count
                    save(f'episode{count}_end')
        if expert.poll() is None:
            print(f'bc-robot demo: gave up after {timeout:.0f} s', file=sys.stderr)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return saved
