"""Orchestration of the whole stack on the simulated arm: the code behind `bc-robot demo`,
`bc-robot loop` and `bench/e2e.py`.

It starts the *same* node graphs users start (`bc_robot.graph` + the `Supervisor` of
`bc-robot launch`), drives seeded episodes through the nodes' own services and topics
(sim reset, bridge enable, pedal, episode recording), and summarizes what happened from
`/sim/task_state`, the policy node's JSON dump and the recorded `episode.json` files.

Pure pieces (no rclpy, no torch): `stats` (summaries, chunk-boundary metrics), `draw`
(PNG figures with OpenCV), `report` (Markdown). ROS pieces: `ros` (the orchestrator's own
node), `graphs` (a graph run), `episodes` (the episode protocol), `evaluate`, `record`,
`loop`. Training goes through the `bc-robot train` command in a child process, so torch
never loads into the process that talks to the robot graph. See docs/loop.md.
"""
