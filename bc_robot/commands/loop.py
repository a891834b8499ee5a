"""`bc-robot loop`: the whole HG-DAgger loop on the simulated arm in one command.

Record N demonstrations through teleop → train → deploy and evaluate → HG-DAgger rounds (the
scripted expert takes over with the pedal, the teleop node records the corrections) →
retrain on the aggregate → evaluate again; for plain aggregation and for intervention
weighting. Prints a table and writes results.json, loop.md and loop.png to --output.

A CI-sized smoke run:
    bc-robot loop --demos 2 --rounds 1 --corrections 1 --eval-episodes 1 --steps 20 \\
        --image-size 24x32 --timeout 6
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    """'HxW' (e.g. 48x64) → (48, 64)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'image size {text!r} must look like HxW, e.g. 48x64')
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--output', default=None,
                        help='output folder (default: out/loop-<date>-<time>)')
    parser.add_argument('--demos', type=int, default=10, help='demonstrations to record (10)')
    parser.add_argument('--demos-from', nargs='+', default=[], metavar='FOLDER',
                        help='recorded episode folders (globs expanded by the shell): train on '
                             'the first --demos of them, sorted, instead of recording')
    parser.add_argument('--rounds', type=int, default=2, help='HG-DAgger rounds (2)')
    parser.add_argument('--corrections', type=int, default=10,
                        help='correction episodes per round (10)')
    parser.add_argument('--label-budget', type=float, default=None, metavar='FRACTION',
                        help='corrections may add at most this fraction of the demonstrations\' '
                             'labelled samples over all rounds (e.g. 0.3), split evenly over '
                             'the rounds; collection ends where a round\'s share is spent '
                             '(default: no bound, --corrections episodes per round)')
    parser.add_argument('--eval-episodes', type=int, default=20,
                        help='evaluation episodes per policy, same seeds each time (20)')
    parser.add_argument('--evaluation', choices=['graph', 'virtual'], default='graph',
                        help='graph: the deploy graph in real time; virtual: in-process with '
                             'the same executor on a virtual clock, 100 ms inference delay, '
                             '~10x faster (push only); corrections always use the graph')
    parser.add_argument('--variants', nargs='+', default=['plain', 'weighted'],
                        choices=['plain', 'weighted'],
                        help='aggregation variants (plain: HG-DAgger, demos and the human\'s '
                             'corrections weigh 1, what the policy did alone 0; weighted: '
                             'the training config\'s intervention weighting)')
    parser.add_argument('--task', default='push', choices=('push', 'reach'))
    parser.add_argument('--head', default=None,
                        choices=('mse', 'gmm', 'discrete', 'act', 'diffusion', 'flow'),
                        help='policy head (default: the --config file\'s, else mse)')
    parser.add_argument('--config', default=None, metavar='YAML',
                        help='training config, as `bc-robot train --config` (default: '
                             'config/train/<head>.yaml; config/train/readout.yaml is the '
                             'shipped default\'s recipe)')
    parser.add_argument('--steps', type=int, default=None,
                        help='training steps per policy (default: the training config\'s)')
    parser.add_argument('--batch-size', type=int, default=None, help='training batch size')
    parser.add_argument('--image-size', type=_size, default=None, metavar='HxW',
                        help='policy image size (default: the training config\'s)')
    parser.add_argument('--intervention-weight', type=float, default=None,
                        help='weighted variant: weight of correction samples (default: config)')
    parser.add_argument('--finetune', action='store_true',
                        help='retrain each round from the previous policy, not from scratch')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='training config override, as `bc-robot train --set`')
    parser.add_argument('--executor', default='rtc', choices=('sync', 'ensemble', 'async', 'rtc'))
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='sim seconds per policy episode (30)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (1: more threads than free cores make torch '
                             'many times slower while the sim runs beside it)')
    parser.add_argument('--dart', type=float, default=0.0, metavar='SIGMA_M',
                        help='record the demonstrations with DART noise of this std (m) on '
                             'the executed target (0 = off; the label stays the clean '
                             'command)')
    parser.add_argument('--nudges', type=int, default=0, metavar='COUNT',
                        help='give the cube this many nudges (random direction, 1-2 cm) per '
                             'demonstration while recording, so the demonstrations show the '
                             'human steering a cube that left its push line (0 = off; '
                             'corrections and evaluation run without them)')
    parser.add_argument('--nudge-speed', type=float, nargs=2, default=None,
                        metavar=('LOW', 'HIGH'),
                        help='speed each nudge gives the cube, drawn from [LOW, HIGH] (m/s; '
                             '0.3 slides it about 1 cm, 0.6 about 4 cm; default 0.2 0.4)')
    parser.add_argument('--record-rtf', type=float, default=1.0, metavar='FACTOR',
                        help='sim speed while recording demonstrations (1.0); below 1 the record '
                             'graph runs on sim time, slower than real time, so a loaded machine '
                             'still records every camera frame (0.5 on 2 cores)')
    parser.add_argument('--side', default='random', choices=('random', 'left', 'right'),
                        help='push: the scripted human approaches from this side (random: '
                             'bimodal demonstrations, which an mse head averages)')
    parser.add_argument('--expert', action='append', default=[], metavar='KEY=VALUE',
                        help='scripted human while recording and correcting: '
                             'max_speed, push_speed, noise, speed_variation, side_offset, '
                             'side_back, behind_offset, plan_variation, lateral_variation '
                             '(e.g. noise=0; side_offset=0 comes down behind the cube instead '
                             'of beside it; plan_variation=0.3 varies those three per '
                             'episode; lateral_variation=0.015 starts pushes off centre); '
                             'and when it takes over while correcting: off_plan_threshold, '
                             'stall_time, min_progress, min_correction_time, release_distance, '
                             'push_lateral (e.g. stall_time=2.5 takes over sooner when a '
                             'push stalls)')
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID to use (default: a private random one, localhost)')


def expert_params(side: str, pairs: list[str]) -> dict[str, object]:
    """sim_expert parameters from --side and --expert KEY=VALUE, checked against the node's
    own schema and the expert's own configs, push plan and takeover rules (values that only
    fail together, such as a plan_variation that would put the paddle down on the cube) so a
    typo or an out-of-range value stops the loop before anything runs."""
    from bc_robot.learning.config import parse_override
    from bc_robot.sim.settings import (CORRECTION_PARAMS, EXPERT_PARAMS, SIM_EXPERT_SCHEMA,
                                       correction_from_params, expert_from_params)
    values = dict(parse_override(item) for item in pairs)
    known = EXPERT_PARAMS + CORRECTION_PARAMS
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f'--expert {", ".join(unknown)}: not an expert parameter; '
                         f'known: {", ".join(known)}')
    if side != 'random':
        values['side'] = side
    checked = SIM_EXPERT_SCHEMA.validate(values)
    expert_from_params(checked)
    correction_from_params(checked)
    return {name: checked[name] for name in values}


def run(args: argparse.Namespace) -> int:
    from bc_robot.learning.config import parse_override
    from bc_robot.orchestrate.episodes import EpisodeSettings
    from bc_robot.orchestrate.graphs import GraphError
    from bc_robot.orchestrate.loop import LoopSettings, run_loop
    from bc_robot.orchestrate.ros import RosLink, private_domain, stop_on_signals
    from bc_robot.orchestrate.training import TrainSettings
    try:
        overrides = dict(parse_override(item) for item in args.set)
        settings = LoopSettings(
            demos=args.demos, rounds=args.rounds, corrections=args.corrections,
            eval_episodes=args.eval_episodes, evaluation=args.evaluation,
            variants=tuple(dict.fromkeys(args.variants)),
            task=args.task, executor=args.executor, finetune=args.finetune,
            expert=expert_params(args.side, args.expert),
            dart_sigma=args.dart, record_nudges=args.nudges, demo_dirs=tuple(args.demos_from),
            **({'record_nudge_speed': tuple(args.nudge_speed)} if args.nudge_speed else {}),
            record_real_time_factor=args.record_rtf, label_budget=args.label_budget,
            episode=EpisodeSettings(timeout=args.timeout),
            train=TrainSettings(head=args.head, config=args.config, steps=args.steps,
                                batch_size=args.batch_size, image_size=args.image_size,
                                threads=args.threads, seed=args.seed, device=args.device,
                                intervention_weight=args.intervention_weight,
                                overrides=overrides))
        domain = private_domain(args.domain_id)
    except ValueError as exc:
        print(f'bc-robot loop: {exc}', file=sys.stderr)
        return 2
    out = Path(args.output or f'out/loop-{time.strftime("%Y%m%d-%H%M%S")}').expanduser().resolve()
    logging.getLogger('OpenGL').setLevel(logging.WARNING)
    print(f'bc-robot loop: {settings.demos} demos, {settings.rounds} round(s) x '
          f'{settings.corrections} corrections, {settings.eval_episodes} evaluation episodes, '
          f'variants {", ".join(settings.variants)}; ROS_DOMAIN_ID={domain}; output {out}',
          flush=True)
    stop_on_signals()
    link = RosLink('bc_robot_loop')
    try:
        results = run_loop(link, out, settings, say=lambda text: print(text, flush=True))
    except (GraphError, ValueError, TimeoutError) as exc:
        print(f'bc-robot loop: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'bc-robot loop: interrupted; every graph stopped; partial results in {out}',
              file=sys.stderr)
        return 130
    finally:
        link.close()
    print(f'loop done in {results["elapsed_s"]:.0f} s: {out / "loop.md"}, {out / "loop.png"}, '
          f'{out / "results.json"}')
    errors = sum(r['errors'] for r in results['rows'])
    return 0 if errors == 0 else 1
