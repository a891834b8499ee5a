"""observation_node: raw cameras + proprioception → the policy's observation.

Cameras and state keys come from the model's policy.json (`model` parameter), so this node
and the policy cannot disagree. Each frame goes through `core.preprocess.preprocess_image`
(the function the dataset converter uses too); `core.sync.ObservationSynchronizer` matches
it with the other cameras and interpolates joint states and TCP pose to its stamp. Output:
/bc/obs/<camera> (rgb8 at policy size) and /bc/obs/state (JointState, name = state labels),
all with the reference frame's stamp. See docs/policy.md.
"""
from __future__ import annotations

import sys
import threading

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from bc_robot.core.policy_settings import OBSERVATION_SCHEMA, POSE_KEYS, sync_config
from bc_robot.core.pose import Pose
from bc_robot.core.preprocess import preprocess_image
from bc_robot.core.spec import SIM_ONLY_STATE_KEYS, load_spec
from bc_robot.core.state import build_state_vector, gripper_opening, state_labels
from bc_robot.core.sync import InputMonitor, ObservationSynchronizer
from bc_robot.graph import READY_KEY, resolve_model, ready_value
from bc_robot.nodes.common import (ERROR, OK, SENSOR_QOS, WARN, DiagnosticsPublisher,
                                   LeanSpinning, declare_parameters, diagnostic_status, run,
                                   seconds_to_stamp, stamp_to_seconds)
from bc_robot.nodes.image_msgs import image_msg_to_rgb8, image_to_msg


class ObservationNode(LeanSpinning, Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('observation_node', **kwargs)
        p = self.p = declare_parameters(self, OBSERVATION_SCHEMA)
        self.spec = load_spec(resolve_model(p['model']))
        configured = p['cameras'] or [c.name for c in self.spec.cameras]
        missing = [c.name for c in self.spec.cameras if c.name not in configured]
        if missing:
            raise ValueError(f'policy {self.spec.name!r} needs camera(s) {missing} that are not '
                             f'in the configured cameras {configured}')
        keys = self.spec.state_keys
        sim_only = [k for k in keys if k in SIM_ONLY_STATE_KEYS]
        if sim_only:
            raise ValueError(f'policy {self.spec.name!r} uses state key(s) {sim_only}: the '
                             f'simulator\'s ground truth, for in-process ablations '
                             f'(learning.rollout); observation_node has no source for them')
        inputs = (['joints'] if {'joint_positions', 'gripper'} & set(keys) else []) + \
            (['pose'] if set(POSE_KEYS) & set(keys) else [])
        self.sync = ObservationSynchronizer(
            [c.name for c in self.spec.cameras], inputs,
            sync_config(p))
        self.labels = state_labels(keys)
        self.lock = threading.Lock()
        self.monitors = {name: InputMonitor() for name in
                         [c.name for c in self.spec.cameras] + ['joint_states', 'current_pose']}
        self.invalid: dict[str, int] = {}
        self._joint_index: tuple[tuple[str, ...], list[int]] | None = None
        self._last_publish: float | None = None
        self._started = self._now()
        self._problems = 0

        prefix = p['output_prefix'].rstrip('/')
        self.pub_state = self.create_publisher(JointState, f'{prefix}/state', SENSOR_QOS)
        self.pub_images = {}
        for cam in self.spec.cameras:
            self.pub_images[cam.name] = self.create_publisher(Image, f'{prefix}/{cam.name}',
                                                              SENSOR_QOS)
            topic = p['camera_topic'].replace('{camera}', cam.name)
            compressed = cam.name in p['compressed_cameras']
            self.create_subscription(
                CompressedImage if compressed else Image,
                topic + '/compressed' if compressed else topic,
                lambda msg, c=cam: self._on_image(c, msg), SENSOR_QOS,
                callback_group=MutuallyExclusiveCallbackGroup())
        proprio = MutuallyExclusiveCallbackGroup()
        if 'joints' in inputs:
            self.create_subscription(JointState, p['joint_states_topic'], self._on_joints,
                                     SENSOR_QOS, callback_group=proprio)
        if 'pose' in inputs:
            self.create_subscription(PoseStamped, p['current_pose_topic'], self._on_pose,
                                     SENSOR_QOS, callback_group=proprio)
        housekeeping = MutuallyExclusiveCallbackGroup()
        self.create_timer(0.01, self._poll, callback_group=housekeeping)
        self.diagnostics = DiagnosticsPublisher(self)
        self.create_timer(1.0 / p['diagnostics_rate_hz'], self._publish_diagnostics,
                          callback_group=housekeeping)
        self.get_logger().info(
            f'observation_node: policy {self.spec.name!r}, cameras '
            f'{[c.name for c in self.spec.cameras]}, state {list(keys)}, inputs {inputs}')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _refuse(self, source: str, reason: str) -> None:
        self.invalid[source] = self.invalid.get(source, 0) + 1
        self.get_logger().warning(f'{source}: {reason}', throttle_duration_sec=2.0)

    # --- inputs --------------------------------------------------------------------------
    def _on_image(self, camera, msg) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        self.monitors[camera.name].arrived(stamp, self._now())
        try:
            image = preprocess_image(image_msg_to_rgb8(msg), camera)
        except ValueError as exc:
            self._refuse(camera.name, str(exc))
            return
        with self.lock:
            self.sync.add_frame(camera.name, stamp, image)
        self._poll()

    def _on_joints(self, msg: JointState) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        self.monitors['joint_states'].arrived(stamp, self._now())
        names = tuple(msg.name)
        if self._joint_index is None or self._joint_index[0] != names:
            wanted = list(self.p['arm_joints']) + list(self.p['finger_joints'])
            absent = [n for n in wanted if n not in names]
            if absent:
                self._refuse('joint_states', f'joints {absent} missing from {list(names)}')
                return
            self._joint_index = (names, [names.index(n) for n in wanted])
        position = np.asarray(msg.position, dtype=np.float64)
        index = self._joint_index[1]
        if position.shape[0] < len(names):
            self._refuse('joint_states', f'{len(names)} names but {position.shape[0]} positions')
            return
        arm = position[index[:len(self.p['arm_joints'])]]
        fingers = position[index[len(self.p['arm_joints']):]]
        opening = gripper_opening(fingers, self.p['finger_travel'])
        self._add_proprio('joints', stamp, np.concatenate([arm, [opening]]), 'joint_states')

    def _on_pose(self, msg: PoseStamped) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        self.monitors['current_pose'].arrived(stamp, self._now())
        if msg.header.frame_id not in ('', self.p['base_frame']):
            self._refuse('current_pose', f'frame {msg.header.frame_id!r} is not '
                                         f'{self.p["base_frame"]!r}')
            return
        p, q = msg.pose.position, msg.pose.orientation
        self._add_proprio('pose', stamp, [p.x, p.y, p.z, q.x, q.y, q.z, q.w], 'current_pose')

    def _add_proprio(self, name: str, stamp: float, value, source: str) -> None:
        try:
            with self.lock:
                self.sync.add_proprio(name, stamp, value)
        except ValueError as exc:
            self._refuse(source, str(exc))
            return
        self._poll()

    # --- output --------------------------------------------------------------------------
    def _poll(self) -> None:
        with self.lock:
            ready = self.sync.poll(self._now())
        for obs in ready:
            self._publish(obs)

    def _publish(self, obs) -> None:
        keys = self.spec.state_keys
        joints = obs.joints if obs.joints is not None else np.zeros(8)
        pose = obs.pose if obs.pose is not None else Pose.identity()
        try:
            vector = build_state_vector(keys, pose, float(joints[-1]), joints[:-1][:7]) \
                if keys else np.zeros(0)
        except ValueError as exc:
            self._refuse('state', str(exc))
            return
        stamp = seconds_to_stamp(obs.stamp)
        for name, skew in obs.skews.items():
            monitor = self.monitors.get({'joints': 'joint_states', 'pose': 'current_pose'}
                                        .get(name, name))
            if monitor is not None:
                monitor.skew(skew)
        for cam, image in obs.images.items():
            self.pub_images[cam].publish(image_to_msg(image, 'rgb8', f'{cam}_camera', stamp))
        state = JointState(name=self.labels, position=[float(v) for v in vector])
        state.header.stamp = stamp
        state.header.frame_id = self.p['base_frame']
        self.pub_state.publish(state)
        self._last_publish = self._now()

    def _publish_diagnostics(self) -> None:
        now = self._now()
        with self.lock:
            dropped = dict(self.sync.dropped)
            published = self.sync.published
        values = {'published': published, **{f'dropped_{k}': v for k, v in dropped.items()},
                  **{f'invalid_{k}': v for k, v in self.invalid.items()}}
        for name, monitor in self.monitors.items():
            values.update({f'{name}.{k}': v for k, v in monitor.summary(now).items()})
        since = now - (self._last_publish if self._last_publish is not None else self._started)
        problems = sum(dropped.values()) + sum(self.invalid.values())
        new_problems, self._problems = problems - self._problems, problems
        if since > max(1.0, 4 * self.p['max_age']):
            level, message = ERROR, f'no observation published for {since:.1f} s'
        elif new_problems:
            level, message = WARN, f'{new_problems} inputs dropped or refused since last report'
        else:
            level, message = OK, f'{published} published'
        # ready: observations are being published (every camera + state synchronised)
        values[READY_KEY] = ready_value(published > 0 and level != ERROR)
        self.diagnostics.publish([diagnostic_status('observation_node: sync', 'observation_node',
                                                    level, message, values)])


def main(args=None) -> int:
    return run(lambda: ObservationNode(), args)


if __name__ == '__main__':
    sys.exit(main())
