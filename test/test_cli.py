"""The `bc-robot` command: help lists every command, mistakes exit non-zero."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bc_robot import cli

from conftest import REPO

BC_ROBOT = Path(sys.executable).with_name('bc-robot')


def bc_robot(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user types it."""
    return subprocess.run([str(BC_ROBOT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_console_script_is_installed():
    assert BC_ROBOT.is_file(), 'bc-robot console script missing: run `make env`'


def test_help_lists_every_command():
    proc = bc_robot('--help')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: bc-robot')
    for name, (_module, help_text) in cli.COMMANDS.items():
        lines = [line for line in proc.stdout.splitlines() if line.strip().startswith(name + ' ')]
        assert lines and help_text in lines[0], f'{name} missing from --help'
    assert 'bc-robot doctor' in proc.stdout


def test_unknown_command_exits_non_zero_and_names_it():
    proc = bc_robot('frobnicate')
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr
    assert 'doctor' in proc.stderr  # and says what the choices are


def test_no_command_prints_help_and_fails():
    proc = bc_robot()
    assert proc.returncode == 2
    assert 'usage: bc-robot' in proc.stdout


def test_unknown_option_of_a_command_is_refused():
    proc = bc_robot('doctor', '--no-such-option')
    assert proc.returncode == 2
    assert '--no-such-option' in proc.stderr


@pytest.mark.parametrize('name', list(cli.COMMANDS))
def test_each_command_has_help_or_says_it_is_not_there_yet(name, capsys):
    module_name = cli.COMMANDS[name][0]
    if importlib.util.find_spec(module_name) is None:
        assert cli.main([name]) == 3
        assert f'bc-robot {name}: not available yet' in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as info:
        cli.main([name, '--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: bc-robot {name}')
    assert cli.COMMANDS[name][1] in out


def test_command_whose_dependency_is_missing_says_which(tmp_path, monkeypatch, capsys):
    (tmp_path / 'bc_fake_command.py').write_text('import bc_not_a_real_module\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, 'fake', ('bc_fake_command', 'a command with a missing dep'))
    assert cli.main(['fake']) == 3
    err = capsys.readouterr().err
    assert "bc-robot fake: needs the Python module 'bc_not_a_real_module'" in err
