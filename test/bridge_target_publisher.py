"""A stand-in policy (or teleop) process for the bridge integration tests: publishes a
PoseStamped target stream (+ gripper) at a fixed rate, well-behaved or with injected faults.

    python test/bridge_target_publisher.py --mode circle|line|still|faulty [--rate 20] ...

Faulty mode mixes valid targets along a line with the inputs a broken policy produces:
quiet and signalling NaN, ±Inf, 1e308, -0.0, zero and non-unit quaternions, out-of-box
positions, 1 m jumps, a foreign frame, and bad gripper values. It logs what it sends so a
failing test shows the stream.
"""
from __future__ import annotations

import argparse
import math
import signal
import struct
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float64

from bc_robot.nodes.common import COMMAND_QOS

DOWN = (1.0, 0.0, 0.0, 0.0)
SNAN = struct.unpack('<d', struct.pack('<Q', 0x7FF0000000000001))[0]
NAN, INF = float('nan'), float('inf')


def faults(base: np.ndarray):
    """(label, position, quaternion, frame, gripper) for each injected fault."""
    x, y, z = base
    return [
        ('quiet NaN', (NAN, y, z), DOWN, 'base', 0.5),
        ('signalling NaN', (x, SNAN, z), DOWN, 'base', SNAN),
        ('+Inf', (x, y, INF), DOWN, 'base', INF),
        ('-Inf quaternion', (x, y, z), (-INF, 0.0, 0.0, 0.0), 'base', -INF),
        ('1e308', (1e308, -1e308, 1e308), DOWN, 'base', 1e308),
        ('-0.0', (-0.0, -0.0, -0.0), (-0.0, -0.0, -0.0, 1.0), 'base', -0.0),
        ('zero quaternion', (x, y, z), (0.0, 0.0, 0.0, 0.0), 'base', 0.5),
        ('non-unit quaternion', (x, y, z), (2.0, 0.0, 0.0, 0.0), 'base', 0.5),
        ('out of box', (1.5, 0.9, -0.5), DOWN, 'base', -1.0),
        ('1 m jump', (x + 1.0, y, z), DOWN, 'base', 0.5),
        ('flipped orientation', (x, y, z), (0.0, 0.0, 0.0, 1.0), 'base', 0.5),
        ('foreign frame', (x, y + 0.2, z), DOWN, 'camera', 0.5),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--mode', choices=['circle', 'line', 'still', 'faulty'], default='line')
    parser.add_argument('--rate', type=float, default=20.0)
    parser.add_argument('--topic', default='/bc/policy/target')
    parser.add_argument('--gripper-topic', default='/bc/policy/gripper')
    parser.add_argument('--start', type=float, nargs=3, default=[0.45, 0.0, 0.30])
    parser.add_argument('--velocity', type=float, nargs=3, default=[0.0, 0.1, 0.0],
                        help='m/s for --mode line (bounces inside ±0.12 m of the start)')
    parser.add_argument('--gripper', type=float, default=1.0)
    args = parser.parse_args()

    rclpy.init()
    node = Node('bridge_target_publisher')
    pub = node.create_publisher(PoseStamped, args.topic, COMMAND_QOS)
    pub_gripper = node.create_publisher(Float64, args.gripper_topic, COMMAND_QOS)
    start = np.array(args.start)
    velocity = np.array(args.velocity)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    period = 1.0 / args.rate
    deadline = t0
    i = 0
    while not stop:
        t = time.monotonic() - t0
        if args.mode == 'circle':
            base = start + 0.06 * np.array([math.cos(t) - 1.0, math.sin(t), 0.0])
        elif args.mode == 'still':
            base = start
        else:  # line and faulty: a triangle wave, 0.24 m peak to peak
            phase = (velocity * t) % 0.48
            base = start + np.where(phase < 0.24, phase, 0.48 - phase) - 0.12 * np.sign(velocity)
        label, position, quat, frame, grip = ('valid', base, DOWN, 'base', args.gripper)
        if args.mode == 'faulty' and i % 3 == 0:
            label, position, quat, frame, grip = faults(base)[(i // 3) % len(faults(base))]
        msg = PoseStamped()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = frame
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(v) for v in position)
        q.x, q.y, q.z, q.w = (float(v) for v in quat)
        pub.publish(msg)
        pub_gripper.publish(Float64(data=float(grip)))
        if label != 'valid' or i % 20 == 0:
            print(f'{t:8.3f} {label}: {list(position)} {list(quat)} {frame} gripper {grip}',
                  flush=True)
        i += 1
        deadline += period
        time.sleep(max(0.0, deadline - time.monotonic()))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
