"""`bc-robot`: the command a user types. Each subcommand lives in `bc_robot.commands`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

DESCRIPTION = ('Behavioral-cloning policies on ROS 2 robot arms: check this machine, run the '
               'simulated demo, start the node graph, train, export and correct (HG-DAgger). '
               'New here? Run `bc-robot doctor` first.')

# name → (module, one-line help). Order is the order shown in --help.
COMMANDS = {
    'doctor': ('bc_robot.commands.doctor', 'check this machine can run the stack'),
    'demo': ('bc_robot.commands.demo', 'run the embedded default on the simulated arm'),
    'launch': ('bc_robot.commands.launch', 'start the deploy or record graph without launch_ros'),
    'train': ('bc_robot.commands.train', 'train a policy from recorded episodes'),
    'export': ('bc_robot.commands.export', 'export a checkpoint to policy.onnx + policy.json'),
    'loop': ('bc_robot.commands.loop', 'run the whole HG-DAgger loop on the simulated arm'),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # that capability has not landed yet
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='bc-robot', description=DESCRIPTION,
        epilog='`bc-robot COMMAND --help` shows the options of a command.')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if not a.startswith('-')), None)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Import only the module that will run; --help lists every name without imports.
        if name == wanted:
            try:
                modules[name] = _load(module_name)
            except ModuleNotFoundError as exc:  # the command is there, a dependency is not
                print(f'bc-robot {name}: needs the Python module {exc.name!r}, which is not '
                      f'installed here (run `make env`; see `bc-robot doctor`)', file=sys.stderr)
                return 3
            if modules[name] is not None:
                modules[name].add_arguments(sub_parser)
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    if args.command is None:
        parser.print_help()
        return 2
    module = modules.get(args.command)
    if module is None:
        print(f'bc-robot {args.command}: not available yet in this version', file=sys.stderr)
        return 3
    if extra and not getattr(module, 'ACCEPTS_EXTRA_ARGS', False):
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    if getattr(module, 'ACCEPTS_EXTRA_ARGS', False):
        args.extra = extra
    return int(module.run(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
