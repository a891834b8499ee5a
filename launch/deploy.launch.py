"""Deploy a policy: observation, policy, teleop (pedal + recording of corrections), bridge.
`sim:=true` adds the simulated arm and the scripted human.

    ros2 launch bc_robot deploy.launch.py model:=/path/to/model sim:=true
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description('deploy')
