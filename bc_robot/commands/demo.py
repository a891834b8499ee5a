"""`bc-robot demo` (`make demo`): the embedded default on the simulated arm, no robot needed.

With a model under models/default (or `--model`): the full deployment graph (`bc-robot
launch deploy sim:=true`: sim_arm, sim_expert in correction mode, observation_node,
policy_node, teleop_node, controller_bridge) runs seeded episodes; the scripted expert may
take over with the pedal when the policy goes wrong, and those interventions are counted.
It prints the success rate, obs→target latency p50/p99 and the interventions, and writes a
report folder (report.md, latency histogram, end-effector paths with the predicted chunks,
camera frames, JSON) whose name it prints.

Without a model (models/default not shipped yet, and no `--model`), it says so and falls
back to the interim demo: sim_arm + sim_expert in direct mode, no policy at all.

It runs on a private DDS domain restricted to localhost unless --domain-id is given, so a
demo never publishes /joint_states or /target_pose onto a network where a real arm listens.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NOTE = ('note: no policy is deployed in this run: the simulated arm is driven by the '
        'scripted expert alone (deploy a model: models/default, or --model FOLDER, e.g. one '
        'trained by `bc-robot loop`).')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', default=None,
                        help='policy folder (policy.json + policy.onnx) or a name under '
                             'models/ (default: models/default; without it the demo falls '
                             'back to the scripted expert alone)')
    parser.add_argument('--episodes', type=int, default=5, help='seeded episodes (1-50)')
    parser.add_argument('--output', default=None,
                        help='report folder (default: out/demo-<date>-<time>)')
    parser.add_argument('--seed', type=int, default=0,
                        help='scene seed of the first episode (episode k uses seed + k)')
    parser.add_argument('--task', default='push', choices=('push', 'reach'),
                        help='simulated task (default push)')
    parser.add_argument('--executor', default='rtc', choices=('sync', 'ensemble', 'async', 'rtc'),
                        help='action-chunk executor of the policy node (default rtc)')
    parser.add_argument('--no-intervene', action='store_true',
                        help='the scripted expert only watches (no pedal takeovers)')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='sim seconds per episode before it counts as failed (default 30)')
    parser.add_argument('--expert-only', action='store_true',
                        help='run the scripted expert alone (no policy), even with a model')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID to use (default: a private random one, localhost)')


def _fail(message: str, code: int = 2) -> int:
    print(f'bc-robot demo: {message}', file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.episodes <= 50:
        return _fail(f'--episodes must be in [1, 50], got {args.episodes}')
    if args.seed < 0:
        return _fail(f'--seed must be >= 0, got {args.seed}')
    if not 1.0 <= args.timeout <= 600.0:
        return _fail(f'--timeout must be in [1, 600] s, got {args.timeout}')
    from bc_robot.graph import resolve_model
    model = Path(resolve_model(args.model or 'default'))
    missing = not (model / 'policy.json').is_file() or not (model / 'policy.onnx').is_file()
    if missing and args.model:
        return _fail(f'model folder {model} has no policy.json + policy.onnx')
    if missing or args.expert_only:
        if missing:
            print(f'bc-robot demo: no model in {model}: falling back to the scripted expert '
                  f'alone (sim_arm + sim_expert, direct mode).')
        args.output = args.output or 'out/demo'
        args.timeout = max(args.timeout, 60.0)
        return run_expert_only(args)
    return run_deployed(args, model)


def run_deployed(args: argparse.Namespace, model: Path) -> int:
    """The full deploy graph with the policy; report folder."""
    from bc_robot.orchestrate.ros import RosLink, private_domain, stop_on_signals
    domain = private_domain(args.domain_id)
    from bc_robot.orchestrate.episodes import EpisodeSettings
    from bc_robot.orchestrate.evaluate import DeploySettings, evaluate
    from bc_robot.orchestrate.graphs import GraphError
    from bc_robot.orchestrate.report import demo_report, fmt, rate_text
    out = Path(args.output or f'out/demo-{time.strftime("%Y%m%d-%H%M%S")}').expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger('OpenGL').setLevel(logging.WARNING)
    try:
        settings = DeploySettings(model=model, task=args.task, executor=args.executor,
                                  intervene=not args.no_intervene,
                                  episode=EpisodeSettings(timeout=args.timeout))
    except ValueError as exc:
        return _fail(str(exc))
    seeds = [args.seed + k for k in range(args.episodes)]
    print(f'bc-robot demo: deploy graph (sim:=true) with model {model}, {args.episodes} '
          f'{args.task} episodes (seeds {seeds[0]}..{seeds[-1]}), executor {args.executor}, '
          f'scripted expert {"may intervene" if settings.intervene else "watching only"}; '
          f'ROS_DOMAIN_ID={domain}; report in {out}', flush=True)

    stop_on_signals()
    link = RosLink('bc_robot_demo')
    try:
        result = evaluate(link, out, 'deploy', settings, seeds)
    except (GraphError, ValueError) as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail('interrupted; the graph was stopped', 130)
    finally:
        link.close()
    dump = None
    stats = out / 'deploy.policy_stats.json'
    if stats.is_file():
        dump = json.loads(stats.read_text())
    report = demo_report(out, result, model, {
        'task': args.task, 'executor': args.executor, 'intervene': settings.intervene,
        'episodes': args.episodes, 'seed': args.seed, 'timeout_s': args.timeout}, dump)
    s, obs = result.summary, result.latency.get('obs_to_target_ms', {})
    print(f'success rate: {rate_text(s["successes"], s["episodes"])}')
    print(f'obs->target latency: p50 {fmt(obs.get("p50"))} ms, p99 {fmt(obs.get("p99"))} ms '
          f'(n = {obs.get("n", 0)})')
    print(f'interventions: {s["interventions"]} in {s["episodes_with_intervention"]} of '
          f'{s["episodes"]} episodes ({s["autonomous_successes"]} succeeded without one)')
    print(f'report: {report}')
    return 0 if s['errors'] == 0 else 1


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


def run_expert_only(args: argparse.Namespace) -> int:
    """The interim demo (no policy): sim_arm + sim_expert in direct mode, PNG frames."""
    from bc_robot.orchestrate.ros import private_domain
    domain = private_domain(args.domain_id)
    out = Path(args.output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / 'summary.json'
    summary_path.unlink(missing_ok=True)
    env = dict(os.environ)
    print(f'bc-robot demo: sim_arm + sim_expert (direct mode), {args.episodes} {args.task} '
          f'episodes, ROS_DOMAIN_ID={domain}; output in {out}')
    print(NOTE)

    sim = _node('bc_robot.nodes.sim_arm', {'seed': args.seed, 'task': args.task},
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
