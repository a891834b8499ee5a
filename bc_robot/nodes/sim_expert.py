"""sim_expert: the scripted human at the simulated arm.

direct     — resets the sim, publishes /target_pose + /gripper/target itself, N episodes;
teleop     — the same episodes driven through /spacenav/twist + /spacenav/joy exactly as a
             SpaceMouse driver and foot pedal would (the teleop node integrates them);
correction — watches whatever drives the arm and, when it is off plan or stalls, holds the
             pedal and corrects through the twist, then releases;
watch      — keeps the pedal released and the twist at zero whatever happens: the policy
             alone is being measured, so no takeover trigger, present or future, may fire.
Planning, noise and the episode flow are in bc_robot.sim.expert / runner; this is wiring.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from bc_robot.core.pose import Pose
from bc_robot.graph import READY_KEY, ready_value
from bc_robot.nodes.common import (COMMAND_QOS, LATCHED_QOS, OK, SENSOR_QOS, WARN,
                                   DiagnosticsPublisher, LeanSpinning, declare_parameters,
                                   diagnostic_status, pose_from_msg, pose_to_msg, run)
from bc_robot.sim.expert import (Command, CorrectionMonitor, JoyButtons, Observation,
                                 RecordingHandshake, ScriptedExpert, spacenav_axes)
from bc_robot.sim.model import FINGER_JOINTS, FINGER_TRAVEL
from bc_robot.sim.runner import ExpertEpisode, summarize
from bc_robot.sim.settings import (SIM_EXPERT_SCHEMA, correction_from_params, expert_from_params,
                                   runner_from_params)

SIDES = {'random': None, 'left': 1, 'right': -1}
RESET_TIMEOUT = 10.0  # wall seconds to wait for /sim/reset before asking again
# teleop: start driving only once the teleop node records, reset only once it stopped (so a
# reset is never recorded in, or labels, the episode that ended): RecordingHandshake.
EPISODE_STATE_TOPIC = '/bc/episode/state'
PRESS_TICKS = 10  # button presses last ~0.2 s at 50 Hz
WATCH_GRACE = 0.5  # correction: sim s after a reset before judging the new episode


class SimExpertNode(LeanSpinning, Node):
    def __init__(self, **node_options) -> None:
        super().__init__('sim_expert', **node_options)
        p = self.params = declare_parameters(self, SIM_EXPERT_SCHEMA)
        self.mode = p['mode']
        self.runner_config = runner_from_params(p)
        self.expert = ScriptedExpert(expert_from_params(p), np.random.default_rng(p['seed']))
        self.monitor = CorrectionMonitor(correction_from_params(p))
        self.buttons = JoyButtons(PRESS_TICKS)
        self.dt = 1.0 / p['control_rate']
        self.pose: Pose | None = None
        self.task: dict | None = None
        self.gripper = 1.0
        self.flow = 'wait'
        self.episode: ExpertEpisode | None = None
        self.results = []
        self._last_gripper_press = -1e9
        self._watched_episode = None
        self._watch_from = 0.0
        self._poses_received = 0
        self.handshake = RecordingHandshake(self.buttons)

        sensors = MutuallyExclusiveCallbackGroup()
        self.create_subscription(PoseStamped, p['current_pose_topic'], self._on_pose, SENSOR_QOS,
                                 callback_group=sensors)
        self.create_subscription(JointState, p['joint_states_topic'], self._on_joints,
                                 SENSOR_QOS, callback_group=sensors)
        self.create_subscription(String, p['task_state_topic'], self._on_task, LATCHED_QOS,
                                 callback_group=sensors)
        if self.mode == 'teleop':
            self.create_subscription(String, EPISODE_STATE_TOPIC, self._on_episode_state,
                                     LATCHED_QOS, callback_group=sensors)
        if self.mode == 'direct':
            self.pub_target = self.create_publisher(PoseStamped, p['target_pose_topic'],
                                                    COMMAND_QOS)
            self.pub_gripper = self.create_publisher(Float64, p['gripper_target_topic'],
                                                     COMMAND_QOS)
        else:
            self.pub_twist = self.create_publisher(Twist, p['twist_topic'], 10)
            self.pub_joy = self.create_publisher(Joy, p['joy_topic'], 10)
        self.reset_client = self.create_client(Trigger, p['reset_service'],
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self._reset_future = None
        self.create_timer(self.dt, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.diagnostics = DiagnosticsPublisher(self)
        self.create_timer(1.0, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f'sim_expert: mode {self.mode}, episodes {p["episodes"] or "∞"}')

    # --- inputs --------------------------------------------------------------------------
    def _on_pose(self, msg: PoseStamped) -> None:
        self.pose = pose_from_msg(msg)
        self._poses_received += 1

    def _publish_diagnostics(self) -> None:
        """Ready once the arm's pose and the task state arrive: the expert can act."""
        ready = self._poses_received > 0 and self.task is not None
        values = {READY_KEY: ready_value(ready), 'mode': self.mode, 'flow': self.flow,
                  'episodes_done': len(self.results),
                  'successes': sum(1 for r in self.results if r.success),
                  'correcting': self.monitor.correcting, 'poses_received': self._poses_received}
        level, message = (OK, f'{self.mode}: {self.flow}') if ready else \
            (WARN, 'waiting for the measured pose and the task state')
        self.diagnostics.publish([diagnostic_status('sim_expert: expert', 'sim_expert', level,
                                                    message, values)])

    def _on_task(self, msg: String) -> None:
        self.task = json.loads(msg.data)

    def _on_episode_state(self, msg: String) -> None:
        try:
            self.handshake.recording = bool(json.loads(msg.data).get('recording'))
        except (ValueError, AttributeError):
            pass

    def _on_joints(self, msg: JointState) -> None:
        fingers = [msg.position[msg.name.index(n)] for n in FINGER_JOINTS if n in msg.name]
        if fingers:
            self.gripper = float(np.clip(np.mean(fingers) / FINGER_TRAVEL, 0.0, 1.0))

    # --- the control tick ----------------------------------------------------------------
    def _tick(self) -> None:
        if self.pose is None or self.task is None:
            return
        if self.mode == 'correction':
            self._watch()
        elif self.mode == 'watch':
            self._publish(None, Command(gripper=self.gripper))
        else:
            self._run_episodes()

    def _run_episodes(self) -> None:
        if self.flow == 'wait':
            if self.reset_client.service_is_ready():
                self._reset_future = self.reset_client.call_async(Trigger.Request())
                self._reset_sent = time.monotonic()
                self.flow = 'resetting'
        elif self.flow == 'resetting' and not self._reset_future.done():
            if time.monotonic() - self._reset_sent > RESET_TIMEOUT:  # sim gone: ask again
                self.get_logger().warning('no answer from the reset service; retrying')
                self.reset_client.remove_pending_request(self._reset_future)
                self.flow = 'wait'
        elif self.flow == 'resetting':
            response = self._reset_future.result()
            self._episode_number = json.loads(response.message)['episode']
            self.pose = None  # wait for a pose measured after the reset
            self.flow = 'settle'
        elif self.flow == 'settle':
            if self.task['episode'] == self._episode_number:
                self.episode = ExpertEpisode(self.expert, self.runner_config, self.task,
                                             self.pose, SIDES[self.params['side']])
                self.handshake.press(time.monotonic())  # teleop: start recording
                self.flow = 'starting' if self.mode == 'teleop' else 'running'
        elif self.flow == 'starting':
            self._publish(None, Command(gripper=self.gripper))
            if self._recording_is(True):
                self.flow = 'running'
        elif self.flow == 'running':
            phase = self.expert.phase
            target, command = self.episode.tick(self.pose, self.task, self.dt)
            if command.phase != phase:
                self.get_logger().debug(f'phase {command.phase} at {self.task["episode_time"]:.2f} s')
            self._publish(target, command)
            if self.episode.over:
                self._finish_episode()
        elif self.flow == 'stopping':
            self._publish(None, Command(gripper=self.gripper))
            if self._recording_is(False):
                self.flow = 'wait' if self._more_episodes() else 'finished'
                if self.flow == 'finished':
                    self._finished()

    def _finish_episode(self) -> None:
        self.results.append(self.episode.result())
        self.handshake.press(time.monotonic())  # teleop: stop recording
        summary = summarize(self.results)
        self.get_logger().info(
            f'episode {self.results[-1].episode}: '
            f'{"success" if self.results[-1].success else "FAILED"} '
            f'({self.results[-1].side}); {summary["successes"]}/{summary["episodes"]} so far')
        self._write_summary(summary)
        self.flow = 'stopping'

    def _recording_is(self, wanted: bool) -> bool:
        if self.mode != 'teleop':
            return not self.buttons.pressing(JoyButtons.EPISODE)
        done, note = self.handshake.poll(wanted, time.monotonic())
        if note:
            self.get_logger().warning(note)
        return done

    def _more_episodes(self) -> bool:
        return self.params['episodes'] == 0 or len(self.results) < self.params['episodes']

    def _finished(self) -> None:
        summary = summarize(self.results)
        self.get_logger().info(f'done: {summary["successes"]}/{summary["episodes"]} episodes '
                               f'succeeded ({100 * summary["success_rate"]:.0f} %), sides '
                               f'{summary["sides"]}')
        if self.params['exit_when_done']:
            self.context.try_shutdown()

    def _watch(self) -> None:
        """Correction mode: hold the pedal and drive only while the monitor says so."""
        task, now = self.task, float(self.task['time'])
        if task['episode'] != self._watched_episode:
            self._watched_episode = task['episode']
            self.expert.reset(task)
            self.monitor.reset(now)
            self._watch_from = now + WATCH_GRACE
        if now < self._watch_from:  # a pose measured before the reset may still arrive
            self.buttons.pedal = False
            self._publish(None, Command(gripper=self.gripper))
            return
        obs = Observation.from_pose(self.pose, task)
        deviation, potential = self.expert.plan_deviation(obs)
        was = self.monitor.correcting
        correcting = self.monitor.update(now, deviation, potential, bool(task['success']),
                                         self.expert.push_offset(obs, now),
                                         self.expert.phase == 'push')
        if correcting and not was:
            self.expert.resume(obs)
            self.get_logger().info(f'taking over: {self.monitor.reason}')
        elif was and not correcting:
            self.get_logger().info('handing back')
        self.buttons.pedal = correcting
        command = self.expert.act(obs, self.dt) if correcting else Command(gripper=self.gripper)
        self._publish(None, command)

    # --- outputs -------------------------------------------------------------------------
    def _publish(self, target: Pose | None, command: Command) -> None:
        stamp = self.get_clock().now().to_msg()
        buttons = self.buttons.tick()
        if self.mode == 'direct':
            if target is not None:
                self.pub_target.publish(pose_to_msg(target, 'base', stamp))
                self.pub_gripper.publish(Float64(data=float(command.gripper)))
            return
        now = self.get_clock().now().nanoseconds * 1e-9
        if abs(command.gripper - self.gripper) > 0.5 and now - self._last_gripper_press > 1.0:
            self.buttons.press(JoyButtons.GRIPPER)  # the driver reports it from the next message
            self._last_gripper_press = now
        axes = spacenav_axes(command, self.params['linear_scale'], self.params['angular_scale'])
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.linear.z = axes[:3]
        twist.angular.x, twist.angular.y, twist.angular.z = axes[3:]
        joy = Joy(axes=axes, buttons=buttons)
        joy.header.stamp = stamp
        self.pub_twist.publish(twist)
        self.pub_joy.publish(joy)

    def _write_summary(self, summary: dict) -> None:
        path = self.params['summary_path']
        if not path:
            return
        summary = {'mode': self.mode, **summary}
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile('w', dir=folder, delete=False, suffix='.tmp') as f:
            json.dump(summary, f, indent=1)
        os.replace(f.name, path)


def main(args=None) -> int:
    return run(lambda: SimExpertNode(), args)


if __name__ == '__main__':
    sys.exit(main())
