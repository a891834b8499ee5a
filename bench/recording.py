"""Recording benchmark: teleop_node records camera-rate traffic while teleoperating.

    .venv/bin/python bench/recording.py --duration 300 --json out.json

Two processes, as on a robot PC: teleop_node (`python -m bc_robot.nodes.teleop_node`, the
recorder under test, publishing /bc/teleop/target + label + gripper at 50 Hz itself) and
this script, which plays the robot: 2 × 640×480 rgb8 cameras at 30 Hz, /joint_states at
500 Hz, /current_pose + /target_pose + /gripper/target at 50 Hz, each on its own thread with
absolute deadlines, counting what it sent. It starts an episode through /bc/episode/start,
stops it after --duration seconds and reports, per topic, sent / received / written /
dropped (recorder's counts, episode.json) / in the bag (the MCAP summary, read with the
`mcap` reader); MB/s; the recorder's CPU % (process, writer thread, subscription thread);
and the teleop output period jitter while recording, measured here on arrival of
/bc/teleop/target. Prints median/p99/max; never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bc_robot.orchestrate.stats import percentiles as stats  # noqa: E402

CAMERAS = ('/camera/front/image_raw', '/camera/wrist/image_raw')
TEMPLATE_TOPICS = {'/joint_states': 500.0, '/current_pose': 50.0, '/target_pose': 50.0,
                   '/gripper/target': 50.0}
TELEOP_TOPICS = ('/bc/teleop/target', '/bc/teleop/label', '/bc/teleop/gripper')


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    path = f'/proc/{pid}/stat' if tid is None else f'/proc/{pid}/task/{tid}/stat'
    fields = Path(path).read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def threads_named(pid: int, prefix: str) -> list[int]:
    found = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        try:
            if (task / 'comm').read_text().strip().startswith(prefix):
                found.append(int(task.name))
        except OSError:
            pass
    return found


class Streams:
    """Publishers on their own threads, absolute-deadline paced, counting what they send."""

    def __init__(self, node, width: int, height: int, camera_rate: float) -> None:
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64

        from bc_robot.core.pose import Pose
        from bc_robot.nodes.common import pose_to_msg
        from bc_robot.nodes.image_msgs import image_to_msg
        self.node = node
        self.sent: dict[str, list[float]] = {}     # publish times (unix s) per topic
        self.late: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        stamp = node.get_clock().now().to_msg()
        rng = np.random.default_rng(0)
        images = {topic: image_to_msg(rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                                      'rgb8', topic.split('/')[2], stamp) for topic in CAMERAS}
        home = Pose(np.array([0.45, 0.0, 0.30]), np.array([1.0, 0.0, 0.0, 0.0]))
        joints = JointState(name=[f'joint{i}' for i in range(1, 8)] + ['finger_joint1',
                                                                        'finger_joint2'],
                            position=[0.0] * 9, velocity=[0.0] * 9, effort=[0.0] * 9)
        makers = {
            '/joint_states': (JointState, lambda s: _stamped(joints, s)),
            '/current_pose': (PoseStamped, lambda s: pose_to_msg(home, 'base', s)),
            '/target_pose': (PoseStamped, lambda s: pose_to_msg(home, 'base', s)),
            '/gripper/target': (Float64, lambda s: Float64(data=1.0)),
        }
        for topic in CAMERAS:
            from sensor_msgs.msg import Image
            makers[topic] = (Image, lambda s, m=images[topic]: _stamped(m, s))
        rates = dict(TEMPLATE_TOPICS, **{t: camera_rate for t in CAMERAS})
        for topic, (msg_type, make) in makers.items():
            publisher = node.create_publisher(msg_type, topic, reliable)
            self.sent[topic], self.late[topic], self.failed[topic] = [], 0, 0
            self._threads.append(threading.Thread(
                target=self._loop, args=(topic, publisher, make, rates[topic]),
                name=f'pub{topic.replace("/", "_")}'))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _loop(self, topic, publisher, make, rate) -> None:
        period = 1.0 / rate
        deadline = time.monotonic()
        clock = self.node.get_clock()
        while not self._stop.is_set():
            try:
                publisher.publish(make(clock.now().to_msg()))
                self.sent[topic].append(time.time())
            except Exception:  # noqa: BLE001 - DDS refused (starved machine): count, go on
                self.failed[topic] += 1
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:            # far behind: count it, do not burst
                self.late[topic] += 1
                deadline = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def sent_between(self, topic: str, start: float, end: float) -> int:
        return sum(1 for t in self.sent[topic] if start <= t <= end)


def _stamped(msg, stamp):
    msg.header.stamp = stamp
    return msg


def run(args) -> dict:
    import rclpy
    from mcap.reader import make_reader
    from bc_robot.nodes.executor import GroupAwareExecutor
    from rclpy.node import Node
    from std_srvs.srv import Trigger

    os.environ.setdefault('ROS_DOMAIN_ID', str(np.random.default_rng().integers(101, 200)))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    output = Path(args.output or tempfile.mkdtemp(prefix='bc_recording_bench_'))
    topics = list(CAMERAS) + list(TEMPLATE_TOPICS) + list(TELEOP_TOPICS)
    command = [sys.executable, '-m', 'bc_robot.nodes.teleop_node', '--ros-args',
               '-p', f'output_dir:={output}', '-p', "task_state_topic:=''",
               '-p', f'flush_period:={args.flush_period}', '-p', 'min_free_mb:=256',
               '-p', 'record_topics:=[' + ','.join(topics) + ']']
    log = open(output / 'teleop_node.log', 'wb') if output.exists() else None
    teleop = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    rclpy.init()
    node = Node('recording_bench')
    executor = GroupAwareExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name='bench-spin')
    spinner.start()
    observed = output / 'observer.json'
    observer = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--observe',
                                 str(observed)], cwd=REPO)
    streams = Streams(node, args.width, args.height, args.camera_rate)
    result: dict = {'duration_s': args.duration, 'output': str(output)}
    try:
        streams.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(node.count_subscribers(t) < 1 for t in topics):
            if teleop.poll() is not None:
                raise RuntimeError(f'teleop_node exited with {teleop.returncode}; see '
                                   f'{output / "teleop_node.log"}')
            time.sleep(0.2)
        time.sleep(2.0)   # the recorder's subscriptions match every publisher
        client = node.create_client(Trigger, '/bc/episode/start')
        client.wait_for_service(30)
        started = _call(client)
        if not started.success:
            raise RuntimeError(f'start refused: {started.message}')
        name = started.message.split()[1]
        cpu0 = {'process': cpu_seconds(teleop.pid)}
        writer_tids = threads_named(teleop.pid, 'bag-writer')
        spin_tids = threads_named(teleop.pid, 'recorder-spin')
        cpu0['writer'] = sum(cpu_seconds(teleop.pid, t) for t in writer_tids)
        cpu0['subscriptions'] = sum(cpu_seconds(teleop.pid, t) for t in spin_tids)
        t0 = time.monotonic()
        observer.send_signal(signal.SIGUSR1)        # start timing /bc/teleop/target arrivals
        while time.monotonic() - t0 < args.duration:
            time.sleep(min(5.0, args.duration))
            if args.progress:
                print(f'  {time.monotonic() - t0:6.0f} s recorded', flush=True)
        wall = time.monotonic() - t0
        cpu1 = {'process': cpu_seconds(teleop.pid),
                'writer': sum(cpu_seconds(teleop.pid, t) for t in writer_tids),
                'subscriptions': sum(cpu_seconds(teleop.pid, t) for t in spin_tids)}
        observer.send_signal(signal.SIGINT)
        observer.wait(30)
        watched = json.loads(observed.read_text())
        periods = np.diff(watched['arrivals'])
        stop_client = node.create_client(Trigger, '/bc/episode/stop')
        stop_client.wait_for_service(10)
        stopped = _call(stop_client)
        folder = output / name
        meta = _wait_episode(folder)
        streams.stop()
        with open(folder / f'{name}.mcap', 'rb') as handle:
            summary = make_reader(handle).get_summary()
        in_bag = {summary.channels[cid].topic: n
                  for cid, n in summary.statistics.channel_message_counts.items()}
        counts = meta['recording']['topics']
        lost = meta['recording'].get('lost_in_transport', {})
        window = (meta['start_time'], meta['end_time'] + 0.3)    # + stop grace
        per_topic = {t: {'sent': streams.sent_between(t, *window) if t in streams.sent else None,
                         'received': counts.get(t, {}).get('received'),
                         'written': counts.get(t, {}).get('written'),
                         'dropped': counts.get(t, {}).get('dropped'),
                         'lost_in_transport': lost.get(t, 0), 'in_bag': in_bag.get(t, 0),
                         'publisher_late': streams.late.get(t, 0),
                         'publish_failed': streams.failed.get(t, 0)} for t in topics}
        bag_bytes = (folder / f'{name}.mcap').stat().st_size
        result.update({
            'episode': name, 'stop': stopped.message, 'wall_s': wall,
            'topics': per_topic,
            'dropped_total': sum(c['dropped'] or 0 for c in per_topic.values()),
            'payload_MB_per_s': meta['recording']['bytes_written'] / 1e6 / wall,
            'bag_MB': bag_bytes / 1e6,
            'peak_queue_MB': meta['recording']['peak_queue_bytes'] / 1e6,
            'cpu_percent': {k: 100.0 * (cpu1[k] - cpu0[k]) / wall for k in cpu0},
            'teleop_period_ms': stats(periods, 1e3),
            'teleop_jitter_ms': stats(np.abs(periods - 0.02), 1e3),
            'teleop_node_internal': watched['internal'],
            'machine': f'{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at end'})
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        streams.stop()
        if observer.poll() is None:
            observer.kill()
            observer.wait(10)
        if teleop.poll() is None:
            teleop.send_signal(signal.SIGINT)
            try:
                teleop.wait(30)
            except subprocess.TimeoutExpired:
                teleop.kill()
        executor.shutdown()
        spinner.join()
        node.destroy_node()
        rclpy.try_shutdown()
    return result


def _call(client):
    from std_srvs.srv import Trigger
    future = client.call_async(Trigger.Request())
    deadline = time.monotonic() + 30
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not future.done():
        raise RuntimeError('episode service did not answer')
    return future.result()


def _wait_episode(folder: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            meta = json.loads((folder / 'episode.json').read_text())
            if meta['recording'].get('finished'):
                return meta
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f'{folder}: episode.json never reported the recording finished')


def observe(path: str) -> int:
    """A light process that only timestamps /bc/teleop/target arrivals (from SIGUSR1 to
    SIGINT) and keeps the worst tick jitter teleop_node reports on /diagnostics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    rclpy.init()
    node = rclpy.create_node('recording_bench_observer')
    arrivals: list[float] = []
    internal = {'jitter_p99_ms_worst_window': 0.0, 'jitter_max_ms': 0.0, 'windows': 0}
    timing = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: timing.set())

    def on_target(_msg) -> None:
        if timing.is_set():
            arrivals.append(time.monotonic())

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            if status.name.endswith(': teleop') and timing.is_set():
                values = {kv.key: kv.value for kv in status.values}
                internal['windows'] += 1
                internal['jitter_p99_ms_worst_window'] = max(
                    internal['jitter_p99_ms_worst_window'], float(values['jitter_p99_ms']))
                internal['jitter_max_ms'] = max(internal['jitter_max_ms'],
                                                float(values['jitter_max_ms']))
    deep = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PoseStamped, '/bc/teleop/target', on_target, deep)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    Path(path).write_text(json.dumps({'arrivals': arrivals, 'internal': internal}))
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=30.0, help='seconds recorded')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--camera-rate', type=float, default=30.0)
    parser.add_argument('--flush-period', type=float, default=0.5)
    parser.add_argument('--output', default='', help='episode folder root (default: a temp dir)')
    parser.add_argument('--keep', action='store_true', help='keep the recorded episode')
    parser.add_argument('--progress', action='store_true')
    parser.add_argument('--json', default='', help='write the figures here')
    parser.add_argument('--observe', default='', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.observe:
        return observe(args.observe)
    result = run(args)
    print(f'recorded {result["wall_s"]:.0f} s: {result["payload_MB_per_s"]:.1f} MB/s payload, '
          f'bag {result["bag_MB"]:.0f} MB, dropped {result["dropped_total"]}, '
          f'peak queue {result["peak_queue_MB"]:.1f} MB')
    print(f'{"topic":28s} {"sent":>8s} {"received":>8s} {"written":>8s} {"dropped":>7s} '
          f'{"lost":>5s} {"in bag":>8s}')
    for topic, c in result['topics'].items():
        print(f'{topic:28s} {c["sent"] if c["sent"] is not None else "-":>8} {c["received"]:>8} '
              f'{c["written"]:>8} {c["dropped"]:>7} {c["lost_in_transport"]:>5} {c["in_bag"]:>8}')
    cpu = result['cpu_percent']
    print(f'recorder CPU: process {cpu["process"]:.1f} %, writer thread {cpu["writer"]:.1f} %, '
          f'subscription thread {cpu["subscriptions"]:.1f} % (of one core)')
    for key in ('teleop_period_ms', 'teleop_jitter_ms'):
        s = result[key]
        print(f'{key:18s} median {s["p50"]:.2f}  p99 {s["p99"]:.2f}  max {s["max"]:.2f}  (n={s["n"]})')
    internal = result['teleop_node_internal']
    print(f'teleop_node tick jitter (its own /diagnostics, worst 10 s window): p99 '
          f'{internal["jitter_p99_ms_worst_window"]:.2f} ms, max {internal["jitter_max_ms"]:.2f} ms')
    print(result['machine'])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
