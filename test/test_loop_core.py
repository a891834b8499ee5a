"""Pure pieces behind `bc-robot demo`, `bc-robot loop` and bench/e2e.py (no rclpy, no
processes): episode summaries, the chunk-boundary figures read from a policy trace, the
report figures, the settings' validation, the aggregation variants, and the scripted
expert's hooks the loop relies on (recording handshake, plan from the episode start)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bc_robot.orchestrate import draw
from bc_robot.orchestrate.episodes import EpisodeSettings
from bc_robot.orchestrate.evaluate import DeploySettings, EvalResult
from bc_robot.orchestrate.loop import (LoopSettings, budget_decision, budget_limit, dart_params,
                                       wait_finalized)
from bc_robot.orchestrate.report import demo_report, loop_figure, loop_table, rate_text
from bc_robot.orchestrate.stats import (ACTING, IDLE, PAUSED, EpisodeOutcome, chunking_summary,
                                        difference_interval, percentiles, summarize,
                                        trace_arrays, wilson_interval, window_metrics)
from bc_robot.orchestrate.training import PLAIN, TrainSettings, count_samples
from bc_robot.sim.expert import ExpertConfig, JoyButtons, RecordingHandshake, ScriptedExpert

REPO = Path(__file__).resolve().parents[1]


# --- summaries ------------------------------------------------------------------------------
def test_summary_counts_successes_interventions_and_autonomy():
    outcomes = [EpisodeOutcome(0, 10, success=True, time_to_success=4.0),
                EpisodeOutcome(1, 11, success=True, time_to_success=6.0, interventions=2,
                               intervention_time=1.5),
                EpisodeOutcome(2, 12, timed_out=True, interventions=1, intervention_time=0.5),
                EpisodeOutcome(3, 13, error='reset: timed out')]
    s = summarize(outcomes)
    # the episode that could not run (a failed reset) is no policy failure: counted apart
    assert (s['episodes'], s['successes'], s['autonomous_successes']) == (3, 2, 1)
    assert s['success_rate'] == pytest.approx(2 / 3)
    assert (s['interventions'], s['episodes_with_intervention']) == (3, 2)
    assert s['intervention_time_s'] == pytest.approx(2.0)
    assert (s['timeouts'], s['errors']) == (1, 1)
    assert s['time_to_success_s']['p50'] == pytest.approx(5.0)
    assert s['seeds'] == [10, 11, 12]
    back = EpisodeOutcome.from_json(outcomes[1].to_json())
    assert back == outcomes[1] and 'path' not in outcomes[1].to_json(with_paths=False)


def test_percentiles_ignore_non_finite_and_say_nan_when_empty():
    p = percentiles([1.0, 2.0, 3.0, math.nan, None, math.inf], scale=1e3)
    assert p['n'] == 3 and p['p50'] == 2000.0 and p['max'] == 3000.0
    assert math.isnan(percentiles([])['p50'])


def test_wilson_interval_is_honest_for_few_episodes():
    lo, hi = wilson_interval(0, 1)
    assert lo == 0.0 and hi > 0.7       # one failed episode says little
    lo, hi = wilson_interval(18, 20)
    assert 0.65 < lo < 0.9 < hi <= 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert rate_text(9, 10).startswith('9/10 (90 %, 95 % CI')


# --- chunking figures from the policy node's trace -------------------------------------------
def _trace(states, new_chunk, xs, wall0=100.0, dt=0.05):
    n = len(states)
    return {'tick': np.arange(n, dtype=float), 'wall': wall0 + dt * np.arange(n),
            'state': np.asarray(states, float), 'new_chunk': np.asarray(new_chunk, float),
            'x': np.asarray(xs, float), 'y': np.zeros(n), 'z': np.full(n, 0.3),
            'queue_depth': np.zeros(n)}


def test_window_metrics_count_idle_after_the_first_action_and_boundary_jumps():
    # 3 idle ticks before the first action (a resume: not counted), a chunk of 4 moving 1 cm
    # per tick, 2 idle ticks (held), a new chunk that jumps 5 cm, paused ticks (a takeover),
    # 2 idle ticks while the policy resumes (the trace still shows the old hold: neither
    # idle nor a boundary), a new chunk, then ticks outside the window.
    states = [IDLE, IDLE, IDLE, ACTING, ACTING, ACTING, ACTING, IDLE, IDLE, ACTING, ACTING,
              PAUSED, PAUSED, IDLE, IDLE, ACTING, ACTING, ACTING]
    new = [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    xs = [0.40, 0.40, 0.40, 0.40, 0.41, 0.42, 0.43, 0.43, 0.43, 0.48, 0.49, 0.49, 0.49,
          0.49, 0.49, 0.60, 0.61, 0.62]
    trace = _trace(states, new, xs)
    w = window_metrics(trace, 100.0, 100.0 + 0.05 * 16 + 1e-6)  # last tick excluded
    assert w['ticks'] == 17
    assert w['idle_ticks'] == 2
    assert w['acting_ticks'] == 8
    assert w['chunks'] == 1  # the first chunk (after the resume) has no previous action
    assert w['boundary_steps_m'] == [pytest.approx(0.05)]
    assert all(s == pytest.approx(0.01) for s in w['inner_steps_m'])
    s = chunking_summary([w, w])
    assert s['idle_ticks'] == 4 and s['chunks'] == 2
    assert s['largest_boundary_step_mm'] == pytest.approx(50.0)
    assert s['typical_step_mm'] == pytest.approx(10.0)
    assert s['largest_over_typical'] == pytest.approx(5.0)


def test_window_without_any_action_reports_nothing_and_bad_dumps_are_named():
    trace = _trace([IDLE] * 5, [0] * 5, [0.4] * 5)
    w = window_metrics(trace, 0.0, 1e9)
    assert w['ticks'] == 5 and w['idle_ticks'] == 0 and w['chunks'] == 0
    with pytest.raises(ValueError, match='no "trace"'):
        trace_arrays({'counters': {}})
    with pytest.raises(ValueError, match='lacks'):
        trace_arrays({'trace': {'tick': []}})


# --- settings ---------------------------------------------------------------------------------
def _model(tmp_path: Path) -> Path:
    from bc_robot.core.spec import CameraSpec
    from bc_robot.runtime.testing_models import make_spec, write_model
    spec = make_spec(name='loop_core', cameras=[CameraSpec('front', 24, 32)],
                     state_keys=('ee_position', 'gripper'))
    return write_model(tmp_path / 'model', spec, function='affine')


def test_deploy_settings_refuse_bad_values_by_name(tmp_path):
    model = _model(tmp_path)
    with pytest.raises(ValueError, match='has no policy.json'):
        DeploySettings(model=tmp_path / 'nothing')
    with pytest.raises(ValueError, match="task 'stack'"):
        DeploySettings(model=model, task='stack')
    with pytest.raises(ValueError, match="executor 'fast'"):
        DeploySettings(model=model, executor='fast')
    with pytest.raises(ValueError, match='inject_delay_ms'):
        DeploySettings(model=model, inject_delay_ms=-1.0)
    with pytest.raises(ValueError, match='output_dir'):
        DeploySettings(model=model, record=True)
    with pytest.raises(ValueError, match='timeout'):
        EpisodeSettings(timeout=0.0)


def test_deploy_params_make_an_evaluation_free_of_takeovers(tmp_path):
    model = _model(tmp_path)
    watch = DeploySettings(model=model, executor='async', inject_delay_ms=100.0)
    params = watch.node_params(tmp_path / 'stats.json')
    assert params['sim_expert'] == {'mode': 'watch'}
    assert params['policy_node'] == {'executor': 'async', 'inject_delay_ms': 100.0,
                                     'stats_path': str(tmp_path / 'stats.json')}
    assert params['teleop_node']['record'] is False
    assert params['sim_arm']['task'] == 'push'
    correct = DeploySettings(model=model, intervene=True, record=True, output_dir=tmp_path,
                             expert={'stall_time': 3.0})
    params = correct.node_params(tmp_path / 's.json')
    assert params['sim_expert'] == {'stall_time': 3.0, 'mode': 'correction'}
    assert params['teleop_node']['record'] is True
    # the launcher's own checks accept every value (schema names and ranges)
    from bc_robot.graph import GRAPHS, check_parameters
    for decl in GRAPHS['deploy']:
        if decl.name in params:
            assert check_parameters(decl, params[decl.name], 'test') == []


def test_aggregation_variants_use_the_trainers_own_weights():
    settings = TrainSettings(head='mse', steps=50, intervention_weight=3.0, image_size=(24, 32))
    plain = settings.config_overrides('plain')
    assert all(plain[k] == v for k, v in PLAIN.items())
    # plain is HG-DAgger: the human's labels count, the policy's own actions do not
    assert plain['dagger.robot_weight'] == 0.0 and plain['dagger.intervention_weight'] == 1.0
    weighted = settings.config_overrides('weighted')
    assert weighted['dagger.intervention_weight'] == 3.0
    assert 'dagger.robot_weight' not in weighted   # the config file's weighting stays
    with pytest.raises(ValueError, match='variant'):
        settings.config_overrides('mixed')
    with pytest.raises(ValueError, match='steps'):
        TrainSettings(steps=0)
    with pytest.raises(ValueError, match='image size'):
        TrainSettings(image_size=(4, 4))
    from bc_robot.orchestrate.training import training_config
    config = training_config(settings, 'plain')
    assert [(c.name, c.height, c.width) for c in config.data.cameras] == [('front', 24, 32)]
    assert config.dagger.intervention_weight == 1.0 and config.train.steps == 50
    assert training_config(settings, 'weighted').dagger.intervention_weight == 3.0


def test_the_readout_recipe_is_the_shipped_defaults_and_the_loop_trains_with_it():
    """config/train/readout.yaml is what models/default was trained with (its provenance),
    and `bc-robot loop --config` takes its head and steps unless given."""
    import json
    from bc_robot.learning.config import load_config
    from bc_robot.orchestrate.training import training_config
    root = Path(__file__).resolve().parents[1]
    recipe = root / 'config' / 'train' / 'readout.yaml'
    shipped = json.loads((root / 'models' / 'default' / 'policy.json').read_text())
    assert load_config(recipe).to_dict() == shipped['provenance']['config']
    config = training_config(TrainSettings(config=str(recipe), threads=2), 'weighted')
    assert (config.head, config.train.steps, config.model.object_readout) == ('flow', 12000,
                                                                              'front')
    config = training_config(TrainSettings(config=str(recipe), head='mse', steps=20), 'plain')
    assert (config.head, config.train.steps, config.dagger.robot_weight) == ('mse', 20, 0.0)
    assert training_config(TrainSettings()).head == 'mse'   # no config: mse.yaml
    with pytest.raises(ValueError, match='nowhere.yaml'):
        TrainSettings(config='nowhere.yaml')


def test_labelled_samples_are_counted_by_source():
    episodes = [_arrays('demo', [True] * 100), _arrays('dagger', [False] * 30 + [True] * 10),
                _arrays('dagger', [False] * 20)]
    counts = count_samples(episodes)
    assert counts == {'demo': 100, 'correction': 10, 'robot': 50, 'labelled': 110,
                      'total': 160, 'weight': 160.0}


class _arrays:
    def __init__(self, kind, human):
        self.kind, self.human = kind, np.asarray(human, bool)
        self.weights = np.ones(len(human), np.float32)

    def __len__(self):
        return len(self.human)


def test_loop_settings_refuse_bad_budgets():
    with pytest.raises(ValueError, match='demos'):
        LoopSettings(demos=0)
    with pytest.raises(ValueError, match='variants'):
        LoopSettings(variants=('plain', 'clever'))
    with pytest.raises(ValueError, match='eval_episodes'):
        LoopSettings(eval_episodes=0)
    with pytest.raises(ValueError, match='dart_sigma = 0.5'):
        LoopSettings(dart_sigma=0.5)
    with pytest.raises(ValueError, match='record_real_time_factor = 0.0 must be'):
        LoopSettings(record_real_time_factor=0.0)
    with pytest.raises(ValueError, match=r'record_nudges = -1, .*nudge count must be an int'):
        LoopSettings(record_nudges=-1)
    with pytest.raises(ValueError, match=r'record_nudge_speed = \(0.5, 3.0\): nudge speed must '
                                         r'lie in \[0.0, 2.0\], got \[0.5, 3.0\]'):
        LoopSettings(record_nudge_speed=(0.5, 3.0))
    assert LoopSettings(record_nudge_speed=[0.3, 0.6]).record_nudge_speed == (0.3, 0.6)
    assert dart_params(0.0) is None
    assert dart_params(0.01) == {'dart_enabled': True, 'dart_sigma_position': 0.01,
                                 'dart_max_position': 0.02}
    with pytest.raises(ValueError, match="evaluation 'guess'"):
        LoopSettings(evaluation='guess')
    with pytest.raises(ValueError, match="push task only, not 'reach'"):
        LoopSettings(evaluation='virtual', task='reach')
    assert LoopSettings(rounds=0).rounds == 0


def test_label_budget_is_a_hard_bound_spread_over_the_rounds():
    for bad in (0.0, -0.1, 11.0, float('nan')):
        with pytest.raises(ValueError, match=f'label_budget = {bad!r} must be in'):
            LoopSettings(label_budget=bad)
    assert LoopSettings(label_budget=0.3).label_budget == 0.3
    # +30 % of 1000 demo samples over 2 rounds: 150 by the end of round 1, 300 by round 2
    assert budget_limit(0.3, 1000, 1, 2) == pytest.approx(150.0)
    assert budget_limit(0.3, 1000, 2, 2) == pytest.approx(300.0)
    used, kept, limit = 0, [], 150.0
    for samples in (60, 50, 70, 10):      # the third would pass the limit: left out, stop
        keep, stop = budget_decision(used, samples, limit)
        if keep:
            used += samples
            kept.append(samples)
        if stop:
            break
    assert kept == [60, 50] and used == 110
    assert budget_decision(100, 50, 150.0) == (True, True)    # exactly spent: stop
    assert budget_decision(0, 0, 150.0) == (True, False)      # no takeover: costs nothing


def test_a_correction_counts_only_once_its_bag_is_finalized(tmp_path):
    import json
    folder = tmp_path / 'ep'
    folder.mkdir()
    assert not wait_finalized(folder, timeout=0.2)             # no episode.json yet
    from bc_robot.recording.episode import EpisodeMetadata, write_episode_json
    meta = EpisodeMetadata(name='ep', status='saved', recording={'finished': False})
    write_episode_json(folder, meta)
    assert not wait_finalized(folder, timeout=0.2)             # saved, bag still open
    meta.recording['finished'] = True
    write_episode_json(folder, meta)
    assert wait_finalized(folder, timeout=0.2)
    assert json.loads((folder / 'episode.json').read_text())['status'] == 'saved'


def test_loop_settings_check_reused_demonstrations(tmp_path):
    folders = []
    for k in range(2):
        folders.append(tmp_path / f'ep{k}')
        folders[-1].mkdir()
        (folders[-1] / 'episode.json').write_text('{}')
    assert LoopSettings(demos=2, demo_dirs=folders).demo_dirs == tuple(map(str, folders))
    with pytest.raises(ValueError, match='demos = 3 but demo_dirs holds only 2'):
        LoopSettings(demos=3, demo_dirs=folders)
    with pytest.raises(ValueError,
                       match=r"demo_dirs \[.*nowhere'\] are not recorded episode folders"):
        LoopSettings(demos=1, demo_dirs=[tmp_path / 'nowhere'])


def test_expert_options_are_checked_against_the_expert_node_schema():
    from bc_robot.commands.loop import expert_params
    assert expert_params('random', []) == {}
    # Coerced to the node's types: an int 0 would fail a double ROS parameter at startup.
    params = expert_params('left', ['noise=0', 'speed_variation=0.1'])
    assert params == {'noise': 0.0, 'speed_variation': 0.1, 'side': 'left'}
    assert isinstance(params['noise'], float)
    with pytest.raises(ValueError, match='--expert nois: not an expert parameter'):
        expert_params('random', ['nois=0'])
    with pytest.raises(ValueError, match="'noise' = 2.0 is above the maximum"):
        expert_params('random', ['noise=2'])
    with pytest.raises(ValueError, match='must look like key=value'):
        expert_params('random', ['noise'])
    # in range for the node, impossible for the expert: the shortest drawn plan would start
    # the push inside the cube
    with pytest.raises(ValueError, match=r'behind_offset 0.065 \(× 0.5: plan_variation 0.5\)'):
        expert_params('random', ['plan_variation=0.5'])
    assert expert_params('left', ['plan_variation=0.3', 'lateral_variation=0.01'])[
        'lateral_variation'] == 0.01
    # when the watching expert takes over is the expert's too (sim_expert parameters)
    assert expert_params('random', ['off_plan_threshold=0.04', 'stall_time=2.5']) == {
        'off_plan_threshold': 0.04, 'stall_time': 2.5}
    with pytest.raises(ValueError, match="'off_plan_threshold' = 0.001 is below the minimum"):
        expert_params('random', ['off_plan_threshold=0.001'])


# --- figures and reports ----------------------------------------------------------------------
def test_nice_ticks_are_round_and_cover_the_range():
    assert draw.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = draw.nice_ticks(0.23, 0.71)
    assert ticks[0] >= 0.23 and ticks[-1] <= 0.71 and len(ticks) >= 3


def _outcome(index, success, xs):
    path = [[0.05 * i, x, 0.05 * i, 0.3 - 0.02 * i] for i, x in enumerate(xs)]
    chunk = [[x + 0.01, 0.0, 0.2] for x in xs[:4]]
    return EpisodeOutcome(index, index, success=success, time_to_success=3.0 if success else None,
                          duration=3.0, path=path, chunks=[chunk],
                          scene={'cube': [0.5, 0.0, 0.025], 'goal': [0.6, 0.1],
                                 'success_radius': 0.02})


def test_paths_png_draws_success_and_failure_paths(tmp_path):
    outcomes = [_outcome(0, True, [0.45, 0.5, 0.55, 0.6]), _outcome(1, False, [0.45, 0.4, 0.35])]
    path = draw.paths_png(tmp_path / 'paths.png', [
        {'path': o.path, 'chunks': o.chunks, 'success': o.success, 'scene': o.scene}
        for o in outcomes])
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (520, 1040, 3)

    def count(color):
        return int(np.sum(np.all(np.abs(image.astype(int) - color) <= 2, axis=2)))
    assert count(draw.SUCCESS) > 100 and count(draw.FAILURE) > 50 and count(draw.CUBE) > 30


def test_histogram_and_lines_write_pngs(tmp_path):
    hist = draw.histogram_png(tmp_path / 'h.png', list(np.random.default_rng(0).normal(80, 5, 200)),
                              'latency', 'ms', {'p50': 80.0, 'p99': 95.0})
    assert cv2.imread(str(hist)).shape == (420, 760, 3)
    empty = draw.histogram_png(tmp_path / 'e.png', [], 'latency', 'ms')
    assert cv2.imread(str(empty)) is not None
    lines = draw.lines_png(tmp_path / 'l.png', [
        {'title': 'a', 'series': [('plain', [0, 1, 2], [10, 40, 60])]},
        {'title': 'b', 'series': [('plain', [100, 130, 150], [10, 40, 60]),
                                  ('weighted', [100, 128, 140], [10, 50, 70])]}])
    assert cv2.imread(str(lines)).shape == (420, 1040, 3)
    with pytest.raises(ValueError, match='could not write'):
        draw.write_png(tmp_path / 'missing' / 'x.png', np.zeros((4, 4, 3), np.uint8))


def test_demo_report_names_the_figures_and_numbers(tmp_path):
    outcomes = [_outcome(0, True, [0.45, 0.5, 0.55]), _outcome(1, False, [0.45, 0.4])]
    outcomes[1].interventions = 1
    dump = {'samples': {'obs_to_target_s': [0.08, 0.09, 0.1, 0.12]}}
    result = EvalResult('deploy', outcomes, summarize(outcomes),
                        {'obs_to_target_ms': percentiles(dump['samples']['obs_to_target_s'], 1e3)},
                        {'idle_ticks': 3, 'ticks': 100, 'idle_fraction': 0.03,
                         'largest_boundary_step_mm': 12.0, 'typical_step_mm': 4.0},
                        {'start': np.full((24, 32, 3), 128, np.uint8)}, tmp_path / 'deploy.log')
    report = demo_report(tmp_path / 'r', result, tmp_path / 'model',
                         {'task': 'push', 'executor': 'rtc', 'intervene': True}, dump)
    text = report.read_text()
    assert '1/2 (50 %' in text and '| interventions | 1 in 1 episode(s)' in text
    assert '| 95.0 / 119.4 / 120.0 ms (n = 4) |' in text
    for name in ('latency_histogram.png', 'paths.png', 'camera_start.png'):
        assert f']({name})' in text
        assert cv2.imread(str(tmp_path / 'r' / name)) is not None
    assert (tmp_path / 'r' / 'summary.json').is_file()


def test_difference_interval_matches_newcombe():
    # Newcombe (1998), Stat. Med. 17:873, method 10, his examples (a) and (b)
    assert difference_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert difference_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    low, high = difference_interval(3, 10, 9, 10)  # the other way round: mirrored
    assert (low, high) == pytest.approx((-0.8090, -0.1705), abs=1e-4)
    assert all(math.isnan(v) for v in difference_interval(1, 0, 1, 5))


def test_loop_table_and_figure(tmp_path):
    samples = {'demo': 500, 'correction': 0, 'robot': 0, 'labelled': 500}
    rows = [{'variant': 'bc', 'round': 0, 'episodes': 10, 'successes': 2, 'samples': samples},
            {'variant': 'plain', 'round': 1, 'episodes': 10, 'successes': 5,
             'samples': {'demo': 500, 'correction': 80, 'robot': 400, 'labelled': 580},
             'collection_interventions': 7},
            {'variant': 'weighted', 'round': 1, 'episodes': 10, 'successes': 6,
             'samples': {'demo': 500, 'correction': 80, 'robot': 400, 'labelled': 580},
             'collection_interventions': 7}]
    table = loop_table(rows)
    assert '| plain | 1 | 5/10 (50 %' in table
    # the gain's 95 % interval (Newcombe): 5/10 against 2/10 is no clear gain, 6/10 neither
    assert '| +30 (-11 to +60) | 580 (500 + 80) | +16.0 % | 400 | 7 |' in table
    assert '| weighted | 1 | 6/10 (60 %' in table
    assert '| +40 (-2 to +67) | 580 (500 + 80) | +16.0 % |' in table
    assert '| bc | 0 | 2/10 (20 %' in table and '| – | 500 (500 + 0) | – | 0 | – |' in table
    image = cv2.imread(str(loop_figure(tmp_path / 'loop.png', rows)))
    assert image.shape == (420, 1040, 3)


# --- bench/e2e.py's statement of the results ------------------------------------------------------
def _e2e():
    spec = importlib.util.spec_from_file_location('bench_e2e', REPO / 'bench' / 'e2e.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_e2e_observations_state_the_claims_from_the_figures():
    e2e = _e2e()
    rows = [{'delay_ms': d, 'executor': e, 'success_rate': r} for d, e, r in (
        (0, 'rtc', 0.8), (200, 'rtc', 0.75), (200, 'async', 0.6), (200, 'ensemble', 0.5),
        (200, 'sync', 0.1), (0, 'sync', 0.8))]
    notes = e2e.observations(rows, [0, 200])
    assert any('rtc keeps 94 %' in n and 'meets' in n for n in notes)
    assert any(n.startswith('200 ms') and 'ordered' in n and 'not in' not in n for n in notes)
    rows[2]['success_rate'] = 0.9  # async beats rtc: said so
    assert any('not in the expected order' in n for n in e2e.observations(rows, [0, 200]))
    for row in rows:  # all equal (e.g. a policy that never succeeds): no order claimed
        row['success_rate'] = 0.0
    notes = e2e.observations(rows, [0, 200])
    assert any('cannot be judged' in n for n in notes) and not any('ordered' in n for n in notes)
    args = e2e.parse_args(['--delays', '0', '300', '--executors', 'sync', 'rtc'])
    assert args.delays == [0.0, 300.0] and args.executors == ['sync', 'rtc']
    assert list(args.object_error_mm) == [0.0, 0.0]
    assert e2e.parse_args(['--object-error-mm', '5', '2']).object_error_mm == [5.0, 2.0]


def test_e2e_virtual_row_keeps_each_seed_for_a_per_seed_comparison():
    e2e = _e2e()
    results = [{'seed': seed, 'success': ok, 'final_distance': d, 'duration': 10.0,
                'idle_ticks': 0, 'max_boundary_step_m': 0.01, 'typical_step_m': 0.002,
                'time_to_success': 8.0 if ok else None, 'error': '',
                'closest_distance': closest,
                'contact_lateral_m': lateral, 'push_heading_deg': heading}
               for seed, ok, d, closest, lateral, heading in (
                   (0, True, 0.019, 0.019, 0.001, 2.0), (1, False, 0.05, 0.025, None, None))]
    row = e2e.virtual_figures({'results': results, 'successes': 1, 'episodes': 2,
                               'rate': 0.5}, 100.0, 'rtc', 20.0)
    assert row['per_seed'] == [{'seed': 0, 'success': True, 'final_distance': 0.019,
                                'closest_distance': 0.019, 'contact_lateral_m': 0.001,
                                'push_heading_deg': 2.0},
                               {'seed': 1, 'success': False, 'final_distance': 0.05,
                                'closest_distance': 0.025, 'contact_lateral_m': None,
                                'push_heading_deg': None}]
    assert row['successes'] == 1 and row['idle_fraction'] == 0.0


# --- the scripted expert's hooks ------------------------------------------------------------------
def test_recording_handshake_waits_for_the_teleop_node_and_presses_again():
    buttons = JoyButtons(press_ticks=2)
    hs = RecordingHandshake(buttons, grace=0.5, repress_after=2.0, give_up=5.0)
    hs.press(0.0)
    assert hs.poll(True, 0.0) == (False, None)          # still pressing
    buttons.tick(), buttons.tick()
    assert hs.poll(True, 0.1) == (True, None)           # nobody reports a state: go on
    hs.recording = False
    hs.press(1.0)
    buttons.tick(), buttons.tick()
    assert hs.poll(True, 1.1) == (False, None)          # not recording yet: wait
    done, note = hs.poll(True, 3.2)                     # the press was lost: again
    assert not done and 'again' in note and buttons.pressing(JoyButtons.EPISODE)
    buttons.tick(), buttons.tick()
    hs.recording = True
    assert hs.poll(True, 3.3) == (True, None)
    hs.press(10.0)                                      # stop
    buttons.tick(), buttons.tick()
    hs.recording = False
    assert hs.poll(False, 10.2) == (False, None)        # the stop grace
    assert hs.poll(False, 10.6) == (True, None)
    hs.press(20.0)
    buttons.tick(), buttons.tick()
    hs.recording = True                                 # never stops: give up after 5 s
    results = []
    for k in range(1, 14):
        buttons.tick()  # the node publishes a Joy message per tick
        results.append(hs.poll(False, 20.0 + 0.5 * k))
    assert any(note and 'again' in note for _done, note in results)
    assert results[-1][0] and 'did not stop' in results[-1][1]


def test_correction_plan_starts_where_the_episode_began():
    """A policy moving from home toward the first waypoint is on plan (the scripted human
    must not take over at every episode start)."""
    expert = ScriptedExpert(ExpertConfig(), np.random.default_rng(0))
    task = {'task': 'push', 'cube': [0.55, 0.1, 0.025], 'goal': [0.45, 0.2],
            'tcp': [0.45, 0.0, 0.3], 'episode': 1}
    expert.reset(task)
    obs = SimpleNamespace(tcp=np.array([0.45, 0.0, 0.3]), task=task)
    deviation, potential = expert.plan_deviation(obs)
    assert deviation == pytest.approx(0.0, abs=1e-9)
    midway = SimpleNamespace(tcp=np.array([0.48, 0.05, 0.22]), task=task)
    d_mid, p_mid = expert.plan_deviation(midway)
    assert d_mid < 0.08 and p_mid < potential
    expert.start = None  # without the start point home is far off the plan
    assert expert.plan_deviation(obs)[0] > 0.08


def test_orchestrating_commands_stop_on_sigint_even_when_started_with_it_ignored():
    """A script that starts `bc-robot loop &` hands it SIGINT ignored; `kill -INT` must still
    stop it the way Ctrl-C does (KeyboardInterrupt, graphs stopped on the way out)."""
    import signal
    import subprocess
    import sys
    code = ('import signal, sys, time\n'
            'assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN\n'
            'from bc_robot.orchestrate.ros import stop_on_signals\n'
            'stop_on_signals()\n'
            'try:\n'  # ready inside the try: the signal may land right after the print
            '    print("ready", flush=True)\n'
            '    time.sleep(30)\n'
            'except KeyboardInterrupt as exc:\n'
            '    print("stopped:", exc, flush=True)\n'
            '    sys.exit(0)\n'
            'sys.exit(3)\n')
    for signum in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [sys.executable, '-c', code], stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            before = []  # anything a library prints first (a fresh machine's first import)
            for line in process.stdout:
                if line.strip() == 'ready':
                    break
                before.append(line)
            else:
                raise AssertionError(f'the child never got ready: {before}')
            process.send_signal(signum)
            out, _ = process.communicate(timeout=20)
        finally:
            process.kill()
        assert process.returncode == 0 and f'stopped: signal {int(signum)}' in out, (
            process.returncode, before, out)
