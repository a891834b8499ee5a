"""A node's parameters declared once, from a typed schema.

The same `ParamSpec` list gives rclpy its descriptors (so `ros2 param describe` shows type,
description and range), validates the values a node starts with (a bad one fails startup
naming the parameter and the value) and refuses a bad runtime `ros2 param set` with the
reason. Keeping it pure lets every rule be unit tested without a ROS graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

SUPPORTED_TYPES = (bool, int, float, str, list)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type), description,
    optional numeric range or string choices, and whether it may change at runtime."""

    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    dynamic: bool = False
    item_type: type | None = None  # element type for list parameters
    allow_empty: bool = True  # for str and list parameters

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f'parameter name must be a non-empty string, got {self.name!r}')
        if not self.description:
            raise ValueError(f'parameter {self.name!r} needs a description')
        if type(self.default) not in SUPPORTED_TYPES:
            raise ValueError(
                f'parameter {self.name!r} default {self.default!r} has unsupported type '
                f'{type(self.default).__name__}')
        if isinstance(self.default, list) and self.item_type is None:
            if not self.default:
                raise ValueError(f'list parameter {self.name!r} with an empty default needs item_type')
            object.__setattr__(self, 'item_type', type(self.default[0]))
        if self.min_value is not None and self.max_value is not None \
                and self.min_value > self.max_value:
            raise ValueError(
                f'parameter {self.name!r} range [{self.min_value}, {self.max_value}] is empty')
        problem = self.check(self.default)
        if problem:
            raise ValueError(f'default of {problem}')

    @property
    def value_type(self) -> type:
        return type(self.default)

    def range_text(self) -> str:
        """Human-readable constraints, shown in `ros2 param describe`."""
        parts = []
        if self.min_value is not None or self.max_value is not None:
            lo = '-inf' if self.min_value is None else f'{self.min_value:g}'
            hi = 'inf' if self.max_value is None else f'{self.max_value:g}'
            parts.append(f'range [{lo}, {hi}]')
        if self.choices:
            parts.append('one of ' + ', '.join(self.choices))
        if not self.allow_empty:
            parts.append('must not be empty')
        return '; '.join(parts)

    def coerce(self, value: Any) -> Any:
        """Accept an int where a float is expected (YAML writes 1 for 1.0); nothing else."""
        if self.value_type is float and type(value) is int:
            return float(value)
        if self.value_type is list and isinstance(value, (list, tuple)):
            if self.item_type is float:
                return [float(v) if type(v) is int else v for v in value]
            return list(value)
        return value

    def check(self, value: Any) -> str | None:
        """None when `value` is acceptable, else a sentence naming parameter and value."""
        value = self.coerce(value)
        label = f'parameter {self.name!r} = {value!r}'
        if type(value) is not self.value_type:
            return f'{label} has type {type(value).__name__}, expected {self.value_type.__name__}'
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(value, list) and type(item) is not self.item_type:
                return (f'{label} has an element {item!r} of type {type(item).__name__}, '
                        f'expected {self.item_type.__name__}')
            if isinstance(item, float) and not math.isfinite(item):
                return f'{label} is not finite'
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if self.min_value is not None and item < self.min_value:
                    return f'{label} is below the minimum {self.min_value:g}'
                if self.max_value is not None and item > self.max_value:
                    return f'{label} is above the maximum {self.max_value:g}'
            if isinstance(item, str) and self.choices and item not in self.choices:
                return f'{label} is not one of: {", ".join(self.choices)}'
        if isinstance(value, (str, list)) and not self.allow_empty and len(value) == 0:
            return f'{label} must not be empty'
        return None


@dataclass
class ParamSchema:
    """An ordered set of specs; names must be unique."""

    specs: list[ParamSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen = set()
        for spec in self.specs:
            if spec.name in seen:
                raise ValueError(f'parameter {spec.name!r} is declared twice')
            seen.add(spec.name)

    def __iter__(self):
        return iter(self.specs)

    def __getitem__(self, name: str) -> ParamSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(f'no parameter named {name!r}')

    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def defaults(self) -> dict[str, Any]:
        return {spec.name: spec.default for spec in self.specs}

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check every value; return the coerced set or raise ValueError naming the first bad
        parameter and its value. Unknown names are an error too (a typo in a YAML file must
        not be silently ignored)."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise ValueError(f'unknown parameter(s): {", ".join(unknown)}; '
                             f'known: {", ".join(self.names())}')
        result = self.defaults()
        for name, value in values.items():
            spec = self[name]
            problem = spec.check(value)
            if problem:
                raise ValueError(problem)
            result[name] = spec.coerce(value)
        return result

    def check_update(self, updates: Iterable[tuple[str, Any]]) -> str | None:
        """Reason to refuse a runtime change, or None to accept it."""
        for name, value in updates:
            try:
                spec = self[name]
            except KeyError:
                continue  # parameters the node does not own (use_sim_time, ...) pass through
            if not spec.dynamic:
                return f'parameter {name!r} cannot be changed while the node runs'
            problem = spec.check(value)
            if problem:
                return problem
        return None
