"""The in-process rollout evaluator (bc_robot.learning.rollout) on code-built ONNX policies:
seeds and determinism, refusal of models the sim cannot feed, and the safety gate between
the policy and the simulated arm."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bc_robot.core.pose import quat_angle
from bc_robot.core.spec import STATE_INPUT
from bc_robot.core.state import sim_object_offsets, state_slice
from bc_robot.learning.rollout import PolicyRollout, RolloutConfig, summarize
from bc_robot.orchestrate.evaluate import evaluate_virtual
from bc_robot.runtime.testing_models import affine_function, make_spec, write_model

PUSH_INPUTS = dict(cameras=[('front', 60, 80)], state_keys=('ee_position', 'ee_rot6d', 'gripper'),
                   action_representation='ee_pose_rot6d_gripper', chunk_length=16,
                   control_rate_hz=20.0)


def _model(path, velocity=(0.0, 0.004, 0.0), **spec_overrides):
    """Moves from the measured position at `velocity` (m per tick); the gripper opening
    follows the front image's brightness, so rendering and preprocessing feed the actions."""
    spec = make_spec(**{**PUSH_INPUTS, 'accepts_prefix': True, 'noise': True,
                        **spec_overrides})
    weights, bias = affine_function(spec, velocity=velocity)
    return write_model(path, spec, function='affine', weights=weights, bias=bias,
                       image_gain=-0.8)


def test_config_is_validated():
    for bad in (dict(episodes=0), dict(seed=-1), dict(timeout_s=float('nan')),
                dict(execute_steps=0), dict(threads=0), dict(executor='later'),
                dict(executor='rtc', delay_s=-0.1), dict(object_bias_m=-0.01),
                dict(object_noise_m=float('inf'))):
        with pytest.raises(ValueError, match=list(bad)[-1]):
            RolloutConfig(**bad)
    with pytest.raises(ValueError, match='delay_s 0.2 needs an executor'):
        RolloutConfig(delay_s=0.2)


@pytest.mark.parametrize('executor', ['sync', 'ensemble', 'async', 'rtc'])
def test_executors_on_a_virtual_clock(tmp_path, executor):
    """200 ms of inference delay (4 ticks) on a 16-action chunk: sync stalls for every
    inference, the others never leave a tick without an action."""
    config = RolloutConfig(episodes=1, timeout_s=3.0, executor=executor, delay_s=0.2)
    with PolicyRollout(_model(tmp_path / 'm'), config) as rollout:
        (result,) = rollout.run()
    assert not result.error and result.duration == pytest.approx(3.0)
    if executor == 'sync':
        # 60 ticks: 0-3 wait for the first chunk (start-up, not a stall); each chunk runs
        # 16 ticks and asks again on its last, arriving 4 ticks later: 3 idle ticks at
        # 20-22 and 39-41, and 58-59 before the fourth chunk would arrive at 61.
        assert result.idle_ticks == 8 and result.chunks == 4
    else:
        assert result.idle_ticks == 0
        # One inference in flight at a time, as in the node: ensemble asks again as soon as
        # one arrives (every 4 ticks); async/rtc when 8 actions remain: the first chunk
        # (ticks 0-15) asks at tick 7, each later one 7 ticks after its start (0, 7, …, 56).
        assert result.chunks == (15 if executor == 'ensemble' else 9)
    # The test policy moves 4 mm per tick from the measured position, which lags the
    # target: a chunk planned 4 ticks ago restarts behind the plan (async jumps back at the
    # boundary), while rtc's prefix continues the committed actions.
    assert result.typical_step_m == pytest.approx(0.004, abs=5e-4)
    if executor == 'async':
        assert result.max_boundary_step_m > 2.5 * result.typical_step_m
    if executor == 'rtc':
        assert result.max_boundary_step_m <= 1.1 * result.typical_step_m


def test_runs_the_configured_seeds_deterministically(tmp_path):
    model = _model(tmp_path / 'm')
    config = RolloutConfig(episodes=2, seed=7, timeout_s=1.0, execute_steps=5)
    runs = []
    for _ in range(2):
        with PolicyRollout(model, config) as rollout:
            scenes, reset = [], rollout.world.reset

            def reset_and_record(reset=reset, scenes=scenes):
                state = reset()
                scenes.append(state['seed'])
                return state

            rollout.world.reset = reset_and_record
            results = rollout.run()
            final_tcp = rollout.world.tcp_pose().position
        runs.append((results, scenes, final_tcp))
    (first, scenes, tcp_a), (second, _, tcp_b) = runs
    assert scenes == [7, 8]                      # the world really used those scene seeds
    assert [r.seed for r in first] == [7, 8]
    for r in first:
        assert not r.success and r.time_to_success is None and not r.error
        assert r.duration == pytest.approx(1.0)
        assert r.chunks == 4                     # 20 ticks, re-planning every 5
    strip = lambda rs: [{k: v for k, v in r.as_dict().items() if k != 'wall_s'} for r in rs]
    assert strip(first) == strip(second)
    np.testing.assert_array_equal(tcp_a, tcp_b)  # bit-identical physics and rendering
    summary = summarize(first)
    assert (summary['episodes'], summary['successes'], summary['rate'],
            summary['seeds']) == (2, 0, 0.0, [7, 8])


def test_closest_distance_is_the_smallest_the_episode_reached(tmp_path):
    """A failure that passed the goal and one that never came near look alike at the end;
    the result keeps the smallest distance of every tick to tell them apart."""
    with PolicyRollout(_model(tmp_path / 'm'), RolloutConfig(episodes=1, timeout_s=1.0,
                                                            execute_steps=5)) as r:
        world, seen = r.world, []
        task_state = world.task_state
        dips = iter([0.3, 0.3, 0.012, 0.3] + [0.3] * 100)

        def dipping():
            state = dict(task_state(), distance=next(dips))
            seen.append(state['distance'])
            return state

        world.task_state = dipping
        (result,) = r.run()
    assert min(seen) == 0.012 and result.final_distance == 0.3
    assert result.closest_distance == 0.012 and not result.success


def test_success_ends_the_episode(tmp_path):
    with PolicyRollout(_model(tmp_path / 'm'), RolloutConfig(episodes=1, timeout_s=5.0)) as r:
        world = r.world
        evaluate = world.evaluate
        world.evaluate = lambda: (evaluate()[0], world.time - world.episode_start > 0.42)
        (result,) = r.run()
    assert result.success and result.time_to_success == pytest.approx(0.45)
    assert result.duration == result.time_to_success


@pytest.mark.parametrize('overrides, problem', [
    (dict(cameras=[('side', 60, 80)]), 'side'),                           # no such sim camera
    (dict(cameras=[('front', 60, 80, (0, 0, 480, 640))]), 'crop'),      # beyond 320x240
])
def test_incompatible_model_is_refused(tmp_path, overrides, problem):
    model = _model(tmp_path / 'm', **overrides)
    with pytest.raises(ValueError, match=problem):
        PolicyRollout(model, RolloutConfig(episodes=1))


def test_execute_steps_beyond_the_chunk_is_refused(tmp_path):
    with pytest.raises(ValueError, match='execute_steps 17'):
        PolicyRollout(_model(tmp_path / 'm'), RolloutConfig(execute_steps=17))


def test_targets_never_jump_more_than_the_gate_allows(tmp_path):
    # 3 cm per 50 ms tick = 0.6 m/s asked, above the bridge's 0.5 m/s: the gate must bind.
    model = _model(tmp_path / 'm', velocity=(0.0, -0.03, 0.0))
    with PolicyRollout(model, RolloutConfig(episodes=2, timeout_s=1.0)) as rollout:
        limits, world = rollout.limits, rollout.world
        targets: list[tuple[int, np.ndarray, np.ndarray]] = []
        set_target, reset = world.set_target, world.reset

        def record(pose):
            targets.append((world.episode, pose.position, pose.orientation))
            return set_target(pose)

        def reset_and_record():
            state = reset()
            held = world.tcp_pose()  # reset holds the current pose: the first "target"
            targets.append((world.episode, held.position, held.orientation))
            return state

        world.set_target, world.reset = record, reset_and_record
        rollout.run()
    steps, turns = [], []
    for (ea, pa, qa), (eb, pb, qb) in zip(targets, targets[1:]):
        if ea == eb:
            steps.append(float(np.linalg.norm(pb - pa)))
            turns.append(quat_angle(qa, qb))
    assert len(steps) == 2 * (1.0 * limits.output_rate_hz)  # every bridge tick, both episodes
    assert max(steps) <= limits.max_step_translation + 1e-9
    assert max(turns) <= limits.max_step_rotation + 1e-9
    assert max(steps) > 0.99 * limits.max_step_translation   # the limit was reached
    assert rollout.world.tcp_pose().position[1] < -0.1     # and the arm did move


def test_the_loop_can_evaluate_in_process(tmp_path):
    """`bc-robot loop --evaluation virtual`: the same summary the deploy graph gives."""
    model = _model(tmp_path / 'm')
    result = evaluate_virtual(tmp_path, 'eval-bc', model, 'rtc', [3, 4], timeout=1.0)
    s = result.summary
    assert (s['episodes'], s['successes'], s['errors'], s['seeds']) == (2, 0, 0, [3, 4])
    assert s['timeouts'] == 2 and [o.duration for o in result.outcomes] == [1.0, 1.0]
    assert json.loads(result.log_path.read_text())['seeds'] == [3, 4]
    with pytest.raises(ValueError, match='consecutive seeds'):
        evaluate_virtual(tmp_path, 'x', model, 'rtc', [3, 5], timeout=1.0)


SIM_OBJECTS_INPUTS = dict(cameras=[], state_keys=('ee_position', 'ee_rot6d', 'gripper',
                                                   'sim_objects'))


def _fed_object_errors(tmp_path, seeds, **config):
    """Per observation, what the policy was fed for cube x, y and goal x, y minus the truth."""
    model = _model(tmp_path / 'm', **SIM_OBJECTS_INPUTS)
    config = RolloutConfig(episodes=len(seeds), seed=seeds[0], timeout_s=0.5, execute_steps=1,
                           **config)
    errors, episode = {}, []
    with PolicyRollout(model, config) as rollout:
        objects, infer = state_slice(rollout.spec.state_keys, 'sim_objects'), rollout.backend.infer
        arm, reset = rollout.world.arm, rollout.world.reset

        def resetting():
            state = reset()
            episode[:] = [errors.setdefault(state['seed'], [])]
            return state

        def recording(feed):
            fed = feed[STATE_INPUT][-1, objects]  # [history, state]
            truth = sim_object_offsets(arm.tcp_pose().position,
                                       np.r_[arm.cube_position(), arm.goal_position()[:2]])
            cube = fed[:3] - truth[:3]          # cube - TCP
            goal = fed[3:] - truth[3:] + cube[:2]  # goal - cube
            assert cube[2] == pytest.approx(0.0, abs=1e-6)  # the table's height is known
            episode[0].append(np.r_[cube[:2], goal])
            return infer(feed)

        rollout.world.reset, rollout.backend.infer = resetting, recording
        results = rollout.run()
    assert not any(r.error for r in results)
    return {seed: np.array(rows) for seed, rows in errors.items()}


def test_sim_objects_policies_read_the_truth_by_default(tmp_path):
    (errors,) = _fed_object_errors(tmp_path, [3]).values()
    assert len(errors) == 10 and np.abs(errors).max() < 1e-6


def test_object_bias_is_drawn_once_per_episode_and_replays(tmp_path):
    errors = _fed_object_errors(tmp_path, [3, 4], object_bias_m=0.01)
    for rows in errors.values():
        np.testing.assert_allclose(rows, rows[:1].repeat(len(rows), 0), atol=1e-6)
        assert 1e-4 < np.abs(rows[0]).max() < 0.05
    assert np.abs(errors[3][0] - errors[4][0]).max() > 1e-4  # another draw per scene
    again = _fed_object_errors(tmp_path / 'again', [3], object_bias_m=0.01)
    np.testing.assert_allclose(again[3], errors[3], atol=1e-6)


def test_object_noise_is_fresh_at_every_observation(tmp_path):
    (rows,) = _fed_object_errors(tmp_path, [3], object_noise_m=0.005).values()
    steps = np.abs(np.diff(rows, axis=0))
    assert (steps > 1e-5).all() and rows.std(0).max() < 0.02


def test_object_error_needs_a_sim_objects_policy(tmp_path):
    with pytest.raises(ValueError, match=r"sim_objects.*state keys: \['ee_position'"):
        PolicyRollout(_model(tmp_path / 'm'), RolloutConfig(object_noise_m=0.002))
