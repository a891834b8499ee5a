"""One run of a node graph (`deploy` or `record` of `bc_robot.graph`), started by the same
`Supervisor` as `bc-robot launch`, with the orchestrator's settings in a params_file (the
launch argument every user has), logs in a file, readiness read from /diagnostics, and a
clean SIGINT stop."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from bc_robot.commands.launch import Supervisor
from bc_robot.graph import check_params_file, check_plans, parse_launch_args, plan_graph
from bc_robot.orchestrate.ros import RosLink

log = logging.getLogger('bc_robot.orchestrate')


class GraphError(RuntimeError):
    """A node of the graph died or never became ready; the message names it and the log."""


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors='replace').splitlines()
    except OSError:
        return ''
    return '\n'.join(text[-lines:])


class GraphRun:
    """Start with `start()` (or `with`), `wait_ready()`, `check()` between steps, `stop()`.

    `params` maps node name → parameters; they are written to `<work>/<name>.params.yaml`
    and passed as `params_file:=`, so they sit on top of config/<node>.yaml exactly as a
    user's file would, and are checked against each node's schema before anything starts."""

    def __init__(self, graph: str, work: Path, name: str, link: RosLink,
                 launch: Mapping[str, str] | None = None,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.graph, self.work, self.name, self.link = graph, Path(work), name, link
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work / f'{name}.log'
        self.params_path = self.work / f'{name}.params.yaml'
        self.params_path.write_text(yaml.safe_dump(
            {node: {'ros__parameters': dict(values)} for node, values in (params or {}).items()},
            sort_keys=True))
        items = [f'{k}:={v}' for k, v in (launch or {}).items()]
        items.append(f'params_file:={self.params_path}')
        self.values = parse_launch_args(items)
        self.plans = plan_graph(graph, self.values)
        problems = check_plans(self.plans) or check_params_file(graph, self.params_path,
                                                                self.values)
        if problems:
            raise ValueError(f'{graph} graph ({name}) cannot start:\n  ' + '\n  '.join(problems))
        self.nodes = [p.name for p in self.plans]
        self.supervisor: Supervisor | None = None
        self._log = None
        self.started_at = 0.0

    def start(self) -> GraphRun:
        self._log = open(self.log_path, 'w', encoding='utf-8')
        self.link.watch_readiness(self.nodes)
        self.supervisor = Supervisor(self.plans, out=self._log, ready_timeout=0)
        self.started_at = time.monotonic()
        self.supervisor.start()
        log.info('%s graph (%s) started: %s; log %s', self.graph, self.name,
                 ', '.join(self.nodes), self.log_path)
        return self

    def __enter__(self) -> GraphRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def check(self) -> None:
        """GraphError if a node has exited (a crash, a refused parameter)."""
        if self.supervisor is None:
            raise GraphError(f'{self.graph} graph ({self.name}) is not running')
        exited = self.supervisor.exited()
        if exited:
            names = ', '.join(f'{n} (exit code {c})' for n, c in exited.items())
            raise GraphError(f'{self.graph} graph ({self.name}): {names} stopped; last log '
                             f'lines of {self.log_path}:\n{tail(self.log_path)}')

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until every node reports ready on /diagnostics; seconds it took."""
        deadline = time.monotonic() + timeout
        while self.link.not_ready():
            self.check()
            if time.monotonic() > deadline:
                missing = self.link.not_ready()
                detail = '; '.join(' | '.join(self.link.diagnostic_messages(n)) or
                                   f'{n}: no /diagnostics seen' for n in missing)
                raise GraphError(f'{self.graph} graph ({self.name}): not ready after '
                                 f'{timeout:g} s: {detail}; log {self.log_path}')
            time.sleep(0.2)
        took = time.monotonic() - self.started_at
        log.info('%s graph (%s): all %d nodes ready (%.1f s)', self.graph, self.name,
                 len(self.nodes), took)
        return took

    def stop(self) -> None:
        """SIGINT every node (each finalizes: bags closed, the policy's stats dump written)."""
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self._log is not None:
            self._log.close()
            self._log = None
