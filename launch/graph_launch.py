"""Shared body of deploy.launch.py and record.launch.py: the graph comes from
bc_robot.graph, the one declaration `bc-robot launch` also starts."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from bc_robot.graph import (LAUNCH_ARGS, check_params_file, check_plans, parse_launch_args,
                            plan_graph)


def _nodes(context, graph):
    items = [f'{arg.name}:={LaunchConfiguration(arg.name).perform(context)}' for arg in LAUNCH_ARGS]
    values = parse_launch_args(items)
    plans = plan_graph(graph, values)
    # Refuse before any process starts, naming the problem, exactly as `bc-robot launch` does.
    problems = check_plans(plans)
    if values['params_file'] and not problems:
        problems = check_params_file(graph, plans[0].params_files[-1], values)
    if problems:
        raise RuntimeError('bc_robot: not starting:\n  ' + '\n  '.join(problems))
    return [
        Node(package='bc_robot', executable=plan.executable, name=plan.name, output='screen',
             emulate_tty=True, parameters=[*plan.params_files, plan.params],
             remappings=list(plan.remappings),
             arguments=['--ros-args', '--log-level', plan.log_level],
             # as `bc-robot launch`: one node gone stops the graph (no half-running robot)
             on_exit=Shutdown(reason=f'{plan.name} exited'))
        for plan in plans
    ]


def graph_launch_description(graph):
    arguments = [
        DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description,
                              **({'choices': list(arg.choices)} if arg.choices else {}))
        for arg in LAUNCH_ARGS
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes, args=[graph])])
