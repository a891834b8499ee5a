"""ament_python build of bc_robot: `colcon build` installs it where `ros2 run/launch` look."""
import os

from setuptools import find_packages, setup

PACKAGE = 'bc_robot'

NODES = {
    'sim_arm': 'bc_robot.nodes.sim_arm:main',
    'sim_expert': 'bc_robot.nodes.sim_expert:main',
    'controller_bridge': 'bc_robot.nodes.controller_bridge:main',
    'observation_node': 'bc_robot.nodes.observation_node:main',
    'policy_node': 'bc_robot.nodes.policy_node:main',
    'teleop_node': 'bc_robot.nodes.teleop_node:main',
}


def share_tree(folder: str) -> list[tuple[str, list[str]]]:
    """Every file under `folder`, keeping its sub-folders under share/bc_robot (hidden
    files and Python bytecode left out)."""
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d != '__pycache__')
        paths = [os.path.join(root, f) for f in sorted(files)
                 if not f.startswith('.') and not f.endswith('.pyc')]
        if paths:
            entries.append((os.path.join('share', PACKAGE, root), paths))
    return entries


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    package_data={PACKAGE: ['sim/assets/*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        *share_tree('launch'),
        *share_tree('config'),
        *share_tree('models'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='bc_robot maintainers',
    maintainer_email='maintainers@bc-robot.dev',
    description='Behavioral-cloning deployment and HG-DAgger loop for ROS 2 robot arms',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'{name} = {target}' for name, target in NODES.items()]
        + ['bc-robot = bc_robot.cli:main'],
    },
)
