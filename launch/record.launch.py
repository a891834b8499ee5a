"""Record teleoperated demonstrations: teleop (SpaceMouse + recorder) and the bridge.
`sim:=true` adds the simulated arm and the scripted human driving the SpaceMouse.

    ros2 launch bc_robot record.launch.py sim:=true output_dir:=~/episodes
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description('record')
