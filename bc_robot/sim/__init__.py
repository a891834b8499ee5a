"""The simulated arm: a MuJoCo 7-DoF arm with a parallel gripper, table, cameras and tasks,
tracked by a Cartesian impedance controller, plus the scripted human expert. It is the test
bed for every capability and the embedded default when no robot is connected; the nodes
that expose it look to the rest of the stack exactly like a real arm's drivers.
"""
