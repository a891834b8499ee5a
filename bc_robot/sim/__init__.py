"""The simulated arm: a MuJoCo 7-DoF arm with a parallel gripper, table, cameras and tasks,
tracked by a Cartesian impedance controller, plus the scripted human expert. It is the test
bed for every capability and the embedded default when no robot is connected; the nodes
that expose it look to the rest of the stack exactly like a real arm's drivers.

Nothing here imports rclpy: the nodes in `bc_robot.nodes.sim_arm` / `sim_expert` are wiring.
"""
import os

# MuJoCo picks its GL backend when it is first imported; a robot PC or CI box has no display,
# so offscreen EGL is the default unless the user chose another backend (glfw, osmesa).
os.environ.setdefault('MUJOCO_GL', 'egl')
