"""sim_arm: the MuJoCo arm behind a real arm's ROS 2 interfaces (docs/sim.md).

A physics thread (1 kHz, controller every step, paced to wall time) publishes joint states,
pose, /clock and task state; a render thread draws scenes captured under the physics lock;
ROS callbacks run on the executor. Logic lives in bc_robot.sim.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from bc_robot.graph import READY_KEY, ready_value
from bc_robot.nodes.common import (COMMAND_QOS, ERROR, LATCHED_QOS, OK, SENSOR_QOS, WARN,
                                   DiagnosticsPublisher, LeanSpinning, declare_parameters,
                                   diagnostic_status, pose_from_msg, pose_to_msg, run,
                                   seconds_to_stamp)
from bc_robot.sim.camera import CameraRig, camera_info_fields, check_cameras
from bc_robot.sim.model import JOINT_NAMES
from bc_robot.sim.pacing import Pacer, RateMeter, RtfMeter
from bc_robot.sim.settings import (GAIN_PARAMS, SIM_ARM_SCHEMA, impedance_from_params,
                                   sim_config_from_params)
from bc_robot.sim.world import SimWorld

MAX_BATCH_STEPS = 5  # physics steps between checks of the stop flag / pacer
RENDER_NICE = 5  # the render thread runs this much nicer: physics keeps real time first


class SimArmNode(LeanSpinning, Node):
    def __init__(self, **node_options) -> None:
        super().__init__('sim_arm', **node_options)
        self.params = declare_parameters(self, SIM_ARM_SCHEMA, self._on_params)
        p = self.params
        self.world = SimWorld(sim_config_from_params(p))
        self.lock = threading.Lock()
        self.pacer = Pacer(p['real_time_factor'])
        dt = self.world.timestep
        self._every = {k: max(1, round(1.0 / (p[r] * dt))) for k, r in
                       (('state', 'state_rate'), ('clock', 'clock_rate'),
                        ('task', 'task_state_rate'))}
        self._cameras = list(p['cameras']) if p['camera_rate'] > 0 else []
        check_cameras(self.world.arm.model, self._cameras, p['image_width'], p['image_height'])
        self._sim_stamps = bool(self.get_parameter('use_sim_time').value)
        self._meters = {k: RateMeter() for k in ('physics', 'state', *self._cameras)}
        self._frames_published = 0  # readiness: the cameras have delivered
        self._rtf = RtfMeter(self.world.time)

        sensors = MutuallyExclusiveCallbackGroup()
        self.pub_joints = self.create_publisher(JointState, p['joint_states_topic'], SENSOR_QOS)
        self.pub_pose = self.create_publisher(PoseStamped, p['current_pose_topic'], SENSOR_QOS)
        self.pub_clock = self.create_publisher(Clock, p['clock_topic'], 10)
        self.pub_task = self.create_publisher(String, p['task_state_topic'], LATCHED_QOS)
        prefix = p['camera_topic_prefix'].rstrip('/')
        self.pub_images = {c: self.create_publisher(Image, f'{prefix}/{c}/image_raw', SENSOR_QOS)
                           for c in self._cameras}
        self.pub_infos = {c: self.create_publisher(CameraInfo, f'{prefix}/{c}/camera_info',
                                                   SENSOR_QOS) for c in self._cameras}
        self.create_subscription(PoseStamped, p['target_pose_topic'], self._on_target,
                                 COMMAND_QOS, callback_group=sensors)
        self.create_subscription(Float64, p['gripper_target_topic'], self._on_gripper,
                                 COMMAND_QOS, callback_group=sensors)
        self.create_service(Trigger, p['reset_service'], self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.diagnostics = DiagnosticsPublisher(self)
        self.create_timer(1.0, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())

        self._stop = threading.Event()
        self._frame_due = threading.Event()
        self._render_ready = threading.Event()
        self._render_error: BaseException | None = None
        self._thread_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._guarded, args=(self._physics_loop,),
                                          name='sim-physics')]
        if self._cameras:
            self._threads.append(threading.Thread(target=self._guarded, args=(self._render_loop,),
                                                  name='sim-render'))
            self._threads[1].start()
            self._render_ready.wait(timeout=30.0)
            if self._render_error is not None or not self._render_ready.is_set():
                self.close()
                raise RuntimeError(f'cameras could not be created: {self._render_error!r}')
        self._publish_task_state()
        self._threads[0].start()
        self.get_logger().info(
            f'sim_arm: task {p["task"]}, seed {p["seed"]}, rtf {p["real_time_factor"]}, '
            f'cameras {self._cameras or "off"} at {p["camera_rate"]} Hz')

    # --- threads -------------------------------------------------------------------------
    def _guarded(self, loop) -> None:
        """A publish failing after Ctrl-C shut the context is the normal way out; anything
        else is reported (log + diagnostics)."""
        try:
            loop()
        except Exception as exc:  # noqa: BLE001 - a dead thread must be visible, not silent
            if self.context.ok() and not self._stop.is_set():
                self._thread_error = exc
                self.get_logger().fatal(f'{threading.current_thread().name} stopped: {exc!r}')

    def _physics_loop(self) -> None:
        world, dt, every = self.world, self.world.timestep, self._every
        frame_period = 1.0 / self.params['camera_rate'] if self._cameras else np.inf
        next_frame = world.time
        step = 0
        while not self._stop.is_set():
            with self.lock:  # a reset passes through time 0 (keyframe) before restoring it
                sim_time = world.time
            behind = self.pacer.behind(sim_time)
            if behind < dt:
                time.sleep(min(0.002, max(0.0002, self.pacer.wall_seconds(dt - behind))))
                continue
            batch = int(min(MAX_BATCH_STEPS, behind / dt))
            for _ in range(batch):
                with self.lock:
                    world.step(1)
                step += 1
                if step % every['clock'] == 0:
                    self.pub_clock.publish(Clock(clock=seconds_to_stamp(world.time)))
                if step % every['state'] == 0:
                    self._publish_state()
                if step % every['task'] == 0:
                    self._publish_task_state()
                if world.time >= next_frame:
                    next_frame += frame_period
                    self._frame_due.set()
            self._meters['physics'].tick(batch)

    def _render_loop(self) -> None:
        p = self.params
        try:  # Rendering yields to physics when CPUs are short (Mesa's threads inherit this).
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + RENDER_NICE)
        except OSError:
            pass
        try:
            rig = CameraRig(self.world.arm.model, self._cameras, p['image_width'],
                            p['image_height'], p['render_samples'])
        except Exception as exc:  # noqa: BLE001 - the constructor raises it
            self._render_error = exc
            self._render_ready.set()
            return
        self._render_ready.set()
        infos = {c: self._camera_info(c, rig.fovy[c]) for c in self._cameras}
        try:
            while not self._stop.is_set():
                if not self._frame_due.wait(timeout=0.1):
                    continue
                self._frame_due.clear()
                with self.lock:
                    rig.capture(self.world.arm.data)
                    stamp = self._stamp(self.world.time)
                for cam, pixels in rig.render().items():
                    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding='rgb8',
                                is_bigendian=0, step=pixels.shape[1] * 3)
                    msg.header.stamp = stamp
                    msg.header.frame_id = f'{cam}_camera'
                    msg.data = pixels.tobytes()
                    infos[cam].header.stamp = stamp
                    self.pub_images[cam].publish(msg)
                    self.pub_infos[cam].publish(infos[cam])
                    self._meters[cam].tick()
                self._frames_published += 1
        finally:
            rig.close()

    # --- publishing ----------------------------------------------------------------------
    def _stamp(self, sim_time: float):
        """Sim time under use_sim_time, else wall-clock ROS time: the consumers' clock."""
        if self._sim_stamps:
            return seconds_to_stamp(sim_time)
        return self.get_clock().now().to_msg()

    def _publish_state(self) -> None:
        arm = self.world.arm
        with self.lock:
            stamp = self._stamp(self.world.time)
            position, velocity = arm.joint_positions(), arm.joint_velocities()
            effort, pose = arm.joint_efforts(), arm.tcp_pose()
        msg = JointState(name=list(JOINT_NAMES), position=position.tolist(),
                         velocity=velocity.tolist(), effort=effort.tolist())
        msg.header.stamp = stamp
        self.pub_joints.publish(msg)
        self.pub_pose.publish(pose_to_msg(pose, self.params['base_frame'], stamp))
        self._meters['state'].tick()

    def _publish_task_state(self, state: dict | None = None) -> None:
        if state is None:
            with self.lock:
                state = self.world.task_state()
        self.pub_task.publish(String(data=json.dumps(state)))

    def _camera_info(self, camera: str, fovy: float) -> CameraInfo:
        w, h = self.params['image_width'], self.params['image_height']
        info = CameraInfo(width=w, height=h, **camera_info_fields(fovy, w, h))
        info.header.frame_id = f'{camera}_camera'
        return info

    def _publish_diagnostics(self) -> None:
        with self.lock:
            rtf = self._rtf.read(self.world.time)
            values = {'real_time_factor': rtf, 'requested_real_time_factor': self.pacer.rtf,
                      'pacer_resyncs': self.pacer.resyncs, **self.world.counters()}
        values.update({f'{k}_rate_hz': m.read() for k, m in self._meters.items()})
        values[READY_KEY] = ready_value(  # physics stepping and every camera delivering
            self._thread_error is None and self._threads[0].is_alive()
            and (not self._cameras or self._frames_published > 0))
        slow = 0 < self.pacer.rtf and rtf < 0.95 * self.pacer.rtf
        level, message = (WARN, f'real-time factor {rtf:.2f} below requested') if slow \
            else (OK, f'rtf {rtf:.2f}')
        if self._thread_error is not None:
            level, message = ERROR, f'sim thread failed: {self._thread_error!r}'
        self.diagnostics.publish([diagnostic_status('sim_arm: physics', 'sim_arm', level,
                                                    message, values)])

    # --- callbacks -----------------------------------------------------------------------
    def _on_target(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id
        with self.lock:
            if frame not in ('', self.params['base_frame']):
                self.world.count_rejection('frame_id')
                reason = f'target frame {frame!r} is not {self.params["base_frame"]!r}'
            else:
                reason = self.world.set_target(pose_from_msg(msg))
        if reason:
            self.get_logger().warning(f'ignored /target_pose: {reason}',
                                      throttle_duration_sec=1.0)

    def _on_gripper(self, msg: Float64) -> None:
        with self.lock:
            reason = self.world.set_gripper(msg.data)
        if reason:
            self.get_logger().warning(f'ignored gripper target: {reason}',
                                      throttle_duration_sec=1.0)

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self.lock:
            state = self.world.reset()
        self._publish_task_state(state)
        self.get_logger().info(f'episode {state["episode"]} (seed {state["seed"]})')
        response.success, response.message = True, json.dumps(state)
        return response

    def _on_params(self, changed: dict) -> None:
        self.params.update(changed)
        with self.lock:
            if 'seed' in changed:
                self.world.set_seed(int(changed['seed']))
            if 'real_time_factor' in changed:
                self.pacer.set_rtf(changed['real_time_factor'])
            if any(name in changed for name in GAIN_PARAMS):
                self.world.set_impedance(impedance_from_params(self.params))

    def close(self) -> None:
        """Join the threads (the render thread closes its GL contexts on its own thread)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10.0)


def main(args=None) -> int:
    return run(lambda: SimArmNode(), args)


if __name__ == '__main__':
    sys.exit(main())
