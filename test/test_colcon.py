"""`colcon build` of bc_robot into a workspace puts everything where ROS 2 tools look."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

COLCON = Path(sys.executable).with_name('colcon')
SKIP_NAMES = {'.venv', '.git', '__pycache__', 'build', 'install', 'log', '.pytest_cache'}


def console_scripts() -> list[str]:
    """Executable names declared in setup.py (read from its source, not from the build)."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    names = ['bc-robot']
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'NODES' for t in node.targets):
            names += [ast.literal_eval(k) for k in node.value.keys]
    return names


def shared_files(folder: str) -> list[Path]:
    """Files a user put under launch/, config/ or models/ (relative to the repo)."""
    root = REPO / folder
    if not root.is_dir():
        return []
    return sorted(p.relative_to(REPO) for p in root.rglob('*')
                  if p.is_file() and not any(part.startswith('.') or part == '__pycache__'
                                             for part in p.relative_to(REPO).parts)
                  and p.suffix != '.pyc')


def copy_source(dest: Path) -> Path:
    """A snapshot of the package: the build never writes into the working tree."""
    def ignore(_dir, names):
        return {n for n in names if n in SKIP_NAMES or n.endswith('.egg-info')}
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


@pytest.mark.skipif(not COLCON.exists(), reason='colcon not installed in this environment')
@pytest.mark.parametrize('symlink', [False, True], ids=['install', 'symlink-install'])
def test_colcon_build_installs_where_ros2_tools_look(tmp_path, symlink):
    source = copy_source(tmp_path / 'src' / 'bc_robot')
    command = [str(COLCON), '--log-base', str(tmp_path / 'log'), 'build',
               '--base-paths', str(tmp_path / 'src'),
               '--build-base', str(tmp_path / 'build'),
               '--install-base', str(tmp_path / 'install'),
               '--event-handlers', 'console_direct+']
    if symlink:
        command.append('--symlink-install')
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
    build = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    assert 'Summary: 1 package finished' in build.stdout

    prefix = tmp_path / 'install' / 'bc_robot'
    share = prefix / 'share' / 'bc_robot'
    # `ros2 run bc_robot <exe>` looks in <prefix>/lib/bc_robot
    for name in console_scripts():
        exe = prefix / 'lib' / 'bc_robot' / name
        assert exe.is_file(), f'{name} not installed in lib/bc_robot'
        assert os.access(exe, os.X_OK), f'{exe} is not executable'
    # the ament index marker and package.xml make it a package ROS 2 tools can find
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'bc_robot').is_file()
    assert (share / 'package.xml').read_text() == (REPO / 'package.xml').read_text()
    # every launch, config and model file of the repo, at the same relative path
    expected = shared_files('launch') + shared_files('config') + shared_files('models')
    assert any(p.parts[0] == 'launch' for p in expected), 'the repo has no launch files'
    for relative in expected:
        installed = share / relative
        assert installed.is_file(), f'{relative} not installed under share/bc_robot'
        assert installed.read_bytes() == (source / relative).read_bytes()
    assert not list(share.rglob('__pycache__')) and not list(share.rglob('*.pyc'))

    # What a user gets after `source install/setup.bash`: the package resolves to this
    # workspace (not the editable checkout), ament_index finds its share directory, and the
    # installed `bc-robot` runs.
    probe = ('import bc_robot; '
             'from ament_index_python.packages import get_package_share_directory as share; '
             'print(bc_robot.__file__); print(share("bc_robot"))')
    script = (f'source "{tmp_path}/install/setup.bash" && '
              f'"{sys.executable}" -c \'{probe}\' && '
              f'"{prefix}/lib/bc_robot/bc-robot" --help')
    run = subprocess.run(['bash', '-c', script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    module_file, share_dir, *help_lines = run.stdout.splitlines()
    assert Path(module_file).resolve().is_relative_to(tmp_path.resolve()), module_file
    assert Path(share_dir) == share
    assert 'doctor' in '\n'.join(help_lines)
