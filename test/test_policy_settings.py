"""Parameter schemas of observation_node and policy_node, and their YAML files under config/:
every parameter documented and ranged, every file key known and valid."""
from __future__ import annotations

import re

import pytest
import yaml

from bc_robot.core.policy_settings import (OBSERVATION_SCHEMA, POLICY_SCHEMA, executor_config,
                                           runner_config)
from bc_robot.runtime.testing_models import make_spec
from conftest import REPO

NODES = {'policy_node': POLICY_SCHEMA, 'observation_node': OBSERVATION_SCHEMA}


@pytest.mark.parametrize('node', NODES)
def test_every_parameter_has_a_description_and_numbers_a_range(node):
    for spec in NODES[node]:
        assert len(spec.description) > 10, spec.name
        if spec.value_type in (int, float):
            assert spec.min_value is not None and spec.max_value is not None, spec.name


@pytest.mark.parametrize('node', NODES)
def test_yaml_lists_every_parameter_with_a_valid_default(node):
    text = (REPO / 'config' / f'{node}.yaml').read_text()
    values = yaml.safe_load(text)[node]['ros__parameters']
    schema = NODES[node]
    assert schema.validate(values) == {**schema.defaults(), **values}
    mentioned = set(re.findall(r'^\s+#?\s*(\w+):', text, re.M))
    assert set(schema.names()) <= mentioned


def test_execute_horizon_defaults_to_half_the_chunk_and_must_fit():
    p = POLICY_SCHEMA.defaults()
    spec = make_spec(chunk_length=16)
    assert executor_config(p, spec).execute_horizon == 8
    with pytest.raises(ValueError, match='execute_horizon = 16 must be below the chunk length 16'):
        executor_config({**p, 'execute_horizon': 16}, spec)
    assert executor_config({**p, 'ensemble_every': 50}, spec).ensemble_every == 16
    assert runner_config({**p, 'inject_delay_ms': 250.0}, spec).inject_delay_s == 0.25


def test_bad_values_are_refused_naming_the_parameter():
    with pytest.raises(ValueError, match="'executor' = 'fastest'"):
        POLICY_SCHEMA.validate({'executor': 'fastest'})
    with pytest.raises(ValueError, match="'max_skew' = -0.1"):
        OBSERVATION_SCHEMA.validate({'max_skew': -0.1})
