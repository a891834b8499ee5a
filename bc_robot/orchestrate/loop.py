"""The whole imitation loop on the simulated arm (`bc-robot loop`):

    record N demonstrations through teleop (record graph, scripted human on the SpaceMouse)
      → train → evaluate on the deploy graph (fixed seeds, the expert only watching)
      → HG-DAgger rounds: deploy with the expert in correction mode (pedal takeovers,
        corrections recorded by the teleop node) → aggregate → retrain → evaluate again

for each aggregation variant (`plain`, `weighted`, see `training`). Round 1 collects
corrections once with the shared BC policy; later rounds collect with each variant's own
policy. Every evaluation uses the same scene seeds, so rounds are compared on the same
scenes. Output: results.json, loop.md (table) and loop.png (success against round and
against labelled samples) in the output folder.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bc_robot.orchestrate.episodes import EpisodeSettings
from bc_robot.orchestrate.evaluate import (TASKS, DeploySettings, EvalResult, evaluate,
                                           evaluate_virtual)
from bc_robot.orchestrate.record import record_demos
from bc_robot.orchestrate.report import loop_figure, loop_table, rate_text, write_json
from bc_robot.orchestrate.ros import RosLink
from bc_robot.orchestrate.training import (VARIANTS, TrainOutcome, TrainSettings, camera_names,
                                           correction_samples, train_policy, training_config)
from bc_robot.recording.episode import read_episode_json
from bc_robot.sim.disturbance import NudgeConfig

log = logging.getLogger('bc_robot.orchestrate')
EVALUATIONS = ('graph', 'virtual')
FINALIZE_TIMEOUT_S = 30.0   # a correction episode's bag closing after its stop


@dataclass(frozen=True)
class LoopSettings:
    """Budgets of one loop run (tiny ones make a CI smoke run, see docs/loop.md)."""

    demos: int = 10
    rounds: int = 2
    corrections: int = 10          # correction episodes per round (and per variant after 1)
    eval_episodes: int = 20
    evaluation: str = 'graph'      # 'graph': deploy graph in real time; 'virtual': in-process
    variants: tuple[str, ...] = VARIANTS
    task: str = 'push'
    executor: str = 'rtc'
    train: TrainSettings = field(default_factory=TrainSettings)
    episode: EpisodeSettings = field(default_factory=EpisodeSettings)
    demo_timeout: float = 30.0     # the expert's own limit per demonstration (sim s)
    eval_seed: int = 0             # evaluation scenes: eval_seed + k
    demo_seed: int = 1000          # demonstration scenes: demo_seed + 1 … demo_seed + N
    correction_seed: int = 2000    # round r: correction_seed + 100 r + k
    finetune: bool = False         # retrain from the previous policy instead of from scratch
    sim: dict[str, Any] = field(default_factory=dict)
    expert: dict[str, Any] = field(default_factory=dict)   # sim_expert parameters (e.g. side)
    dart_sigma: float = 0.0        # m; > 0: DART noise on the executed target while recording
    record_nudges: int = 0         # cube nudges per demonstration while recording (sim_arm)
    record_nudge_speed: tuple[float, float] = NudgeConfig().speed  # m/s, drawn per nudge
    # Sim speed while recording (< 1: slower than real time, the graph on sim time, so a
    # loaded machine still renders and records every camera frame; see record_demos).
    record_real_time_factor: float = 1.0
    # Recorded episode folders to take the first `demos` of instead of recording (a loop
    # that starts from demonstrations someone already has, or compares on the same ones).
    demo_dirs: tuple[str, ...] = ()
    # At most this fraction of the demonstrations' labelled samples may come from the
    # human's corrections over the whole loop (None: no bound; see budget_decision).
    label_budget: float | None = None

    def __post_init__(self) -> None:
        for name, low, high in (('demos', 1, 1000), ('rounds', 0, 20), ('corrections', 1, 1000),
                                ('eval_episodes', 1, 1000)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f'{name} = {value!r} must be an int in [{low}, {high}]')
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f'variants {list(self.variants)} must be a non-empty subset of '
                             f'{list(VARIANTS)}')
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f'evaluation {self.evaluation!r} is not one of '
                             f'{", ".join(EVALUATIONS)}')
        if self.evaluation == 'virtual' and self.task != 'push':
            raise ValueError(f'virtual evaluation runs the push task only, not {self.task!r}')
        if self.task not in TASKS:
            raise ValueError(f'task {self.task!r} is not one of {", ".join(TASKS)}')
        if not 0.0 <= self.dart_sigma <= 0.025:  # the cap, 2 sigma, must fit teleop_node's 0.05
            raise ValueError(f'dart_sigma = {self.dart_sigma} must be in [0, 0.025] m')
        try:  # sim_arm's own checks, so the loop accepts exactly what the node will
            speed = NudgeConfig(count=self.record_nudges,
                                speed=tuple(self.record_nudge_speed)).speed
        except (TypeError, ValueError) as exc:
            raise ValueError(f'record_nudges = {self.record_nudges!r}, record_nudge_speed = '
                             f'{self.record_nudge_speed!r}: {exc}') from None
        object.__setattr__(self, 'record_nudge_speed', speed)
        if not 0.05 <= self.record_real_time_factor <= 4.0:
            raise ValueError(f'record_real_time_factor = {self.record_real_time_factor} must be '
                             f'in [0.05, 4]')
        if self.label_budget is not None and not (
                isinstance(self.label_budget, (int, float)) and 0.0 < self.label_budget <= 10.0):
            raise ValueError(f'label_budget = {self.label_budget!r} must be in (0, 10] (a '
                             f'fraction of the demonstrations\' labelled samples)')
        if not 1.0 <= self.demo_timeout <= 600.0:
            raise ValueError(f'demo_timeout = {self.demo_timeout} must be in [1, 600] s')
        object.__setattr__(self, 'demo_dirs', tuple(str(d) for d in self.demo_dirs))
        if self.demo_dirs:
            missing = [d for d in self.demo_dirs if not (Path(d) / 'episode.json').is_file()]
            if missing:
                raise ValueError(f'demo_dirs {missing[:3]} are not recorded episode folders '
                                 f'(no episode.json)')
            if len(self.demo_dirs) < self.demos:
                raise ValueError(f'demos = {self.demos} but demo_dirs holds only '
                                 f'{len(self.demo_dirs)} episode folder(s)')


def dart_params(sigma: float) -> dict[str, Any] | None:
    """teleop_node parameters for DART demonstrations (Laskey et al. 2017): correlated noise
    of `sigma` (capped at 2 sigma) on the executed target; the scripted human sees the
    perturbed arm and corrects it, and the label stays its clean command, so the data
    shows recoveries the policy will need."""
    if sigma <= 0.0:
        return None
    return {'dart_enabled': True, 'dart_sigma_position': float(sigma),
            'dart_max_position': 2.0 * float(sigma)}


def budget_limit(budget: float, demo_samples: int, round_: int, rounds: int) -> float:
    """Correction samples allowed by the end of `round_`: the loop's budget spread evenly
    over the rounds, so round 1 cannot spend what round 2's better policy would use."""
    return budget * demo_samples * round_ / rounds


def budget_decision(used: int, samples: int, limit: float) -> tuple[bool, bool]:
    """(keep the episode, stop collecting) for a correction episode of `samples` labelled
    samples when `used` are spent. An episode that would cross the limit is left out and
    ends the round, so the budget is a hard bound, and the kept episodes are the first ones
    collected (no selection of short corrections)."""
    if used + samples > limit:
        return False, True
    return True, used + samples >= limit


def wait_finalized(folder: Path, timeout: float | None = None) -> bool:
    """Wait until the teleop node has closed the episode's bag and rewritten its
    episode.json (the recorder finalizes off-thread after the stop grace)."""
    deadline = time.monotonic() + (FINALIZE_TIMEOUT_S if timeout is None else timeout)
    while True:
        try:
            meta = read_episode_json(folder)
            if meta.get('status') != 'recording' and meta.get('recording', {}).get('finished'):
                return True
        except (ValueError, OSError):
            pass   # not written yet, or being replaced
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


class BudgetGate:
    """One round's correction collection under a label budget: after each episode it counts
    the episode's labelled samples once the bag is closed, keeps or leaves it out
    (budget_decision) and says whether to stop (`evaluate(..., stop_after=gate)`)."""

    def __init__(self, limit: float | None, used: int, count: Callable[[Path], int],
                 say: Callable[[str], None]) -> None:
        self.limit, self.used, self.count, self.say = limit, used, count, say
        self.kept: dict[Path, int] = {}   # episode → its labelled samples
        self.left_out: list[Path] = []

    def __call__(self, outcome) -> bool:
        if self.limit is None or not outcome.episode_dir:
            return False
        folder = Path(outcome.episode_dir)
        if not wait_finalized(folder):
            self.left_out.append(folder)
            self.say(f'  {folder.name}: not finalized in {FINALIZE_TIMEOUT_S:.0f} s, cannot be '
                     f'counted: left out')
            return False
        if not _collected([outcome]):
            return False
        samples = self.count(folder)
        keep, stop = budget_decision(self.used, samples, self.limit)
        if keep:
            self.kept[folder] = samples
            self.used += samples
        else:
            self.left_out.append(folder)
            self.say(f'  {folder.name}: {samples} labelled samples would pass the budget '
                     f'({self.used} of {self.limit:.0f} spent): left out, round ends')
        return stop


def _collected(outcomes) -> list[Path]:
    """Recorded correction episodes that were finalized (saved)."""
    folders = []
    for o in outcomes:
        if not o.episode_dir:
            continue
        try:
            if read_episode_json(o.episode_dir).get('status') == 'saved':
                folders.append(Path(o.episode_dir))
        except (ValueError, OSError) as exc:
            log.warning('correction episode %s unreadable, left out: %s', o.episode_dir, exc)
    return folders


def _row(variant: str, round_: int, result: EvalResult, trained: TrainOutcome,
         collection: dict[str, Any] | None) -> dict[str, Any]:
    s = result.summary
    return {'variant': variant, 'round': round_, 'episodes': s['episodes'],
            'successes': s['successes'], 'success_rate': s['success_rate'],
            'time_to_success_s': s['time_to_success_s']['p50'], 'errors': s['errors'],
            'samples': trained.samples, 'model': str(trained.model_dir),
            'train_seconds': round(trained.seconds, 1), 'metrics': trained.metrics,
            'collection_interventions': None if collection is None else collection['interventions'],
            'collection': collection}


def run_loop(link: RosLink, out: Path, settings: LoopSettings,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the loop into `out`; returns (and writes to results.json) every row."""
    out = Path(out).resolve()
    work, runs, models = out / 'work', out / 'runs', out / 'models'
    for folder in (work, runs, models):
        folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    cameras = camera_names(settings.train)
    sim = {'cameras': cameras, **settings.sim}
    eval_seeds = [settings.eval_seed + k for k in range(settings.eval_episodes)]
    results: dict[str, Any] = {'settings': _settings_json(settings), 'rows': [], 'phases': []}

    def phase(title: str, data: dict[str, Any]) -> None:
        results['phases'].append({'phase': title, 'elapsed_s': round(time.monotonic() - began, 1),
                                  **data})
        write_json(out / 'results.json', results)

    def deploy(model: Path, **kw) -> DeploySettings:
        return DeploySettings(model=model, task=settings.task, executor=settings.executor,
                              episode=settings.episode, sim=sim,
                              expert=dict(settings.expert), **kw)

    def evaluation(name: str, model: Path) -> EvalResult:
        if settings.evaluation == 'virtual':
            result = evaluate_virtual(work, name, model, settings.executor, eval_seeds,
                                      settings.episode.timeout)
        else:
            result = evaluate(link, work, name, deploy(model), eval_seeds)
        write_json(work / f'{name}.episodes.json', [o.to_json() for o in result.outcomes])
        s = result.summary
        say(f'  evaluation {name}: success {rate_text(s["successes"], s["episodes"])}')
        return result

    if settings.demo_dirs:
        demos = [Path(d).resolve() for d in sorted(settings.demo_dirs)[:settings.demos]]
        say(f'[loop] {len(demos)} recorded demonstrations reused (not recording)')
        phase('record', {'reused': [str(d) for d in demos]})
    else:
        say(f'[loop] recording {settings.demos} demonstrations through teleop …')
        record = record_demos(link, work, 'record', settings.demos, out / 'demos',
                              settings.task, settings.demo_seed, settings.demo_seed,
                              settings.demo_timeout,
                              {**sim, 'nudge_count': settings.record_nudges,
                               'nudge_speed': list(settings.record_nudge_speed)},
                              expert=settings.expert,
                              teleop=dart_params(settings.dart_sigma),
                              real_time_factor=settings.record_real_time_factor)
        say(f'  {len(record.episodes)} episodes recorded, expert success '
            f'{record.expert.get("successes", 0)}/{record.expert.get("episodes", 0)} '
            f'({record.seconds:.0f} s)')
        phase('record', record.to_json())
        demos = list(record.episodes)

    say('[loop] training the BC policy on the demonstrations …')
    base = train_policy(demos, runs / 'bc', models / 'bc', settings.train, 'plain')
    say(f'  {base.samples["labelled"]} labelled samples, {base.seconds:.0f} s')
    phase('train bc', base.to_json())
    ev = evaluation('eval-bc', base.model_dir)
    results['rows'].append(_row('bc', 0, ev, base, None))
    phase('eval bc', ev.to_json())

    data = {v: list(demos) for v in settings.variants}
    current = {v: base for v in settings.variants}
    counted: dict[Path, int] = {}   # correction episode → its labelled samples (budget)

    def spent(variant: str) -> int:
        return sum(counted.get(p, 0) for p in data[variant])

    for round_ in range(1, settings.rounds + 1):
        collected: dict[str, tuple[list[Path], dict[str, Any]]] = {}
        seeds = [settings.correction_seed + 100 * round_ + k for k in range(settings.corrections)]
        for variant in settings.variants:
            key = str(current[variant].model_dir)
            if key not in collected:
                tag = 'shared' if round_ == 1 else variant
                say(f'[loop] round {round_}: {settings.corrections} correction episodes with '
                    f'policy {current[variant].model_dir.name} (expert on the pedal) …')
                limit = None if settings.label_budget is None else budget_limit(
                    settings.label_budget, base.samples['demo'], round_, settings.rounds)
                gate = BudgetGate(limit, spent(variant),
                                  lambda folder: correction_samples([folder], settings.train), say)
                result = evaluate(
                    link, work, f'collect-r{round_}-{tag}',
                    deploy(current[variant].model_dir, intervene=True, record=True,
                           output_dir=out / 'corrections' / f'round{round_}-{tag}'),
                    seeds, stop_after=gate)
                counted.update(gate.kept)
                episodes = [e for e in _collected(result.outcomes) if e not in gate.left_out]
                s = result.summary
                collected[key] = (episodes, {
                    'episodes': s['episodes'], 'recorded': len(episodes),
                    'left_out': [str(p) for p in gate.left_out],
                    'budget_samples': limit,
                    'successes': s['successes'], 'interventions': s['interventions'],
                    'intervention_time_s': s['intervention_time_s'],
                    'autonomous_successes': s['autonomous_successes']})
                say(f'  {s["interventions"]} interventions in {s["episodes_with_intervention"]}'
                    f'/{s["episodes"]} episodes, {len(episodes)} recorded'
                    + ('' if limit is None else f', {gate.used} of {limit:.0f} budget samples'))
                phase(f'collect round {round_} {tag}', result.to_json())
            data[variant] += collected[key][0]
        for variant in settings.variants:
            name = f'{variant}-r{round_}'
            say(f'[loop] round {round_}: retraining ({variant}) on {len(data[variant])} '
                f'episodes …')
            init = current[variant].run_dir if settings.finetune else None
            trained = train_policy(data[variant], runs / name, models / name, settings.train,
                                   variant, init=init)
            phase(f'train {name}', trained.to_json())
            ev = evaluation(f'eval-{name}', trained.model_dir)
            results['rows'].append(_row(variant, round_, ev, trained,
                                        collected[str(current[variant].model_dir)][1]))
            phase(f'eval {name}', ev.to_json())
            current[variant] = trained
    results['elapsed_s'] = round(time.monotonic() - began, 1)
    write_json(out / 'results.json', results)
    loop_figure(out / 'loop.png', results['rows'])
    table = loop_table(results['rows'])
    config = training_config(settings.train)
    (out / 'loop.md').write_text(
        f'# bc-robot loop\n\n{settings.task}, {settings.demos} demonstrations, '
        f'{settings.rounds} HG-DAgger round(s) of {settings.corrections} correction episodes, '
        f'{settings.eval_episodes} evaluation episodes ({settings.evaluation}, seeds '
        f'{eval_seeds[0]}..{eval_seeds[-1]}), head {config.head}, {config.train.steps} steps'
        + ('' if settings.label_budget is None else
           f', corrections within +{100 * settings.label_budget:.0f} % labelled samples')
        + f'; {results["elapsed_s"]:.0f} s.\n\n{table}\n\n'
        f'![success](loop.png)\n')
    say(table)
    return results


def _settings_json(settings: LoopSettings) -> dict[str, Any]:
    data = {k: v for k, v in vars(settings).items() if k not in ('train', 'episode')}
    data['train'] = {k: v for k, v in vars(settings.train).items()}
    data['episode'] = dict(vars(settings.episode))
    return data
