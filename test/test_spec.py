"""core/spec.py: the policy artifact contract — round trip and refusals that name the field."""
from __future__ import annotations

import json

import pytest

from bc_robot.core import spec as S


def spec_json(**changes) -> dict:
    """A valid policy.json (one 64x64 camera, ee pose + gripper state, 16x10 chunk, RTC)."""
    data = {
        'name': 'push_cube',
        'cameras': [{'name': 'front', 'height': 64, 'width': 64, 'crop': [0, 80, 480, 480]}],
        'state_keys': ['ee_position', 'ee_rot6d', 'gripper'],
        'history': 2,
        'action_representation': 'ee_pose_rot6d_gripper',
        'chunk_length': 16,
        'control_rate_hz': 20.0,
        'head': 'mse',
        'inputs': [
            {'name': 'image.front', 'dtype': 'uint8', 'shape': [1, 2, 64, 64, 3]},
            {'name': 'state', 'dtype': 'float32', 'shape': [1, 2, 10]},
            {'name': 'prefix', 'dtype': 'float32', 'shape': [1, 16, 10]},
            {'name': 'prefix_weights', 'dtype': 'float32', 'shape': [1, 16]},
        ],
        'outputs': [{'name': 'actions', 'dtype': 'float32', 'shape': [1, 16, 10]}],
        'accepts_prefix': True,
        'sampler': {'steps': 4},
        'normalization': {'state': {'mean': [0.0] * 10, 'std': [1.0] * 10}},
        'provenance': {'commit': 'abc123', 'episodes': 50},
    }
    data.update(changes)
    return data


def write_model(tmp_path, data: dict, onnx: bytes = b'fake onnx graph bytes'):
    (tmp_path / 'policy.onnx').write_bytes(onnx)
    (tmp_path / 'policy.json').write_text(json.dumps(data))
    return tmp_path


def test_valid_spec_derived_sizes():
    spec = S.PolicySpec.from_json(spec_json())
    assert spec.state_dim == 10 and spec.action_dim == 10
    assert spec.cameras[0].crop == (0, 80, 480, 480)
    assert set(spec.expected_inputs()) == {'image.front', 'state', 'prefix', 'prefix_weights'}
    assert spec.normalization['state'].std == (1.0,) * 10


def test_save_then_load_round_trip_records_sha256(tmp_path):
    spec = S.PolicySpec.from_json(spec_json())
    (tmp_path / 'policy.onnx').write_bytes(b'\x08\x07graph')
    path = S.save_spec(spec, tmp_path)
    assert path == tmp_path / 'policy.json'
    assert not list(tmp_path.glob('*.tmp'))  # written atomically
    on_disk = json.loads(path.read_text())
    assert on_disk['onnx_sha256'] == S.sha256_file(tmp_path / 'policy.onnx')
    assert len(on_disk['onnx_sha256']) == 64
    loaded = S.load_spec(tmp_path)
    assert loaded.to_json() == dict(spec.to_json(), onnx_sha256=on_disk['onnx_sha256'])


def test_swapped_onnx_is_refused_naming_both_hashes(tmp_path):
    spec = S.PolicySpec.from_json(spec_json())
    (tmp_path / 'policy.onnx').write_bytes(b'original')
    S.save_spec(spec, tmp_path)
    recorded = json.loads((tmp_path / 'policy.json').read_text())['onnx_sha256']
    (tmp_path / 'policy.onnx').write_bytes(b'swapped')
    with pytest.raises(ValueError, match=rf'sha256 [0-9a-f]{{64}} does not match policy.json '
                                         rf'onnx_sha256 {recorded}'):
        S.load_spec(tmp_path)
    assert S.load_spec(tmp_path, verify_hash=False).name == 'push_cube'


def test_missing_files_and_bad_json(tmp_path):
    with pytest.raises(ValueError, match=r'policy spec not found: .*policy.json'):
        S.load_spec(tmp_path)
    (tmp_path / 'policy.json').write_text('{"name": "x",')
    with pytest.raises(ValueError, match=r'policy.json is not valid JSON'):
        S.load_spec(tmp_path)
    (tmp_path / 'policy.json').write_text(json.dumps(spec_json()))
    with pytest.raises(ValueError, match=r'policy graph not found: .*policy.onnx'):
        S.load_spec(tmp_path)
    (tmp_path / 'policy.json').write_text('[1, 2]')
    with pytest.raises(ValueError, match=r'must be a JSON object, got list'):
        S.load_spec(tmp_path)


# Each broken field → the text the refusal must contain (field name and offending value).
BAD_FIELDS = [
    ({'schema_version': 7}, r'schema_version 7 is not supported'),
    ({'name': ''}, r'policy name must not be empty'),
    ({'history': 0}, r'history 0 must be an int in \[1, 64\]'),
    ({'history': 2.5}, r'history 2.5 must be an int'),
    ({'chunk_length': 0}, r'chunk_length 0 must be an int in \[1, 1000\]'),
    ({'control_rate_hz': 0.1}, r'control_rate_hz 0.1 must be in \[1, 1000\]'),
    ({'head': 'transformer'}, r"head 'transformer' is not one of"),
    ({'action_representation': 'joint_velocity'},
     r"action_representation 'joint_velocity' is not one of ee_pose_rot6d_gripper"),
    ({'state_keys': ['ee_position', 'wrench']}, r"state key 'wrench' is unknown; known: "),
    ({'state_keys': [], 'cameras': [], 'inputs': []}, r'needs at least one camera or state key'),
    ({'cameras': [{'name': 'front', 'height': 4, 'width': 64}]},
     r"camera 'front' height 4 must be an int in \[8, 2048\]"),
    ({'cameras': [{'name': 'front', 'height': 64, 'width': 64.0}]},
     r"camera 'front' width 64.0 must be an int"),
    ({'cameras': [{'name': 'fr-ont', 'height': 64, 'width': 64}]},
     r"camera name 'fr-ont' must be non-empty letters"),
    ({'cameras': [{'name': 'front', 'height': 64, 'width': 64, 'crop': [0, 0, 10]}]},
     r"camera 'front' crop \[0, 0, 10\] must be \[\] or \[top, left, height, width\]"),
    ({'cameras': [{'name': 'front', 'height': 64, 'width': 64, 'crop': [0, 0, 0, 10]}]},
     r"camera 'front' crop \[0, 0, 0, 10\] has zero size"),
    ({'cameras': [{'name': 'front', 'height': 64, 'width': 64}] * 2},
     r"camera names repeat: \['front', 'front'\]"),
    ({'inputs': [{'name': 'state', 'dtype': 'float64', 'shape': [1, 2, 10]}]},
     r"tensor 'state' dtype 'float64' is not one of"),
    ({'inputs': [{'name': 'state', 'dtype': 'float32', 'shape': [1, -2, 10]}]},
     r"tensor 'state' shape \[1, -2, 10\] must be positive ints"),
    ({'inputs': spec_json()['inputs'][1:]},
     r"spec inputs lack 'image.front' \(uint8 \[1, 2, 64, 64, 3\]\)"),
    ({'inputs': [dict(t, shape=[1, 2, 9]) if t['name'] == 'state' else t
                 for t in spec_json()['inputs']]},
     r"spec input 'state' is float32 \[1, 2, 9\], but cameras/state/chunk settings need "
     r"float32 \[1, 2, 10\]"),
    ({'accepts_prefix': False},
     r"spec declares inputs the runtime does not feed: \['prefix', 'prefix_weights'\]"),
    ({'outputs': [{'name': 'actions', 'dtype': 'float32', 'shape': [1, 8, 10]}]},
     r"spec output 'actions' must be float32 \[1, 16, 10\] \(chunk_length x action_dim\)"),
    ({'normalization': {'state': {'mean': [0.0], 'std': [0.0]}}},
     r"normalization\['state'\]: normalization std must be > 0: \[0.0\]"),
    ({'normalization': {'state': {'mean': [float('nan')], 'std': [1.0]}}},
     r"normalization\['state'\]: normalization mean has a non-finite"),
    ({'normalization': {'state': {'mean': [0.0, 0.0], 'std': [1.0]}}},
     r'normalization mean and std differ in length'),
    ({'bogus_field': 1}, r"policy spec has unknown fields: \['bogus_field'\]"),
    ({'cameras': [{'name': 'front', 'height': 64, 'width': 64, 'fov': 60}]},
     r"policy spec is malformed: .*'fov'"),
]


@pytest.mark.parametrize('changes,message', BAD_FIELDS,
                         ids=[next(iter(c)) + str(i) for i, (c, _) in enumerate(BAD_FIELDS)])
def test_bad_field_is_refused_naming_it(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        S.PolicySpec.from_json(spec_json(**changes))
    # load_spec prefixes the file, so the user also knows WHICH policy.json
    write_model(tmp_path, spec_json(**changes))
    with pytest.raises(ValueError, match=r'policy.json: ') as info:
        S.load_spec(tmp_path)
    assert info.match(message)


def test_missing_required_field_is_named():
    data = spec_json()
    del data['chunk_length']
    with pytest.raises(ValueError, match=r"malformed: .*'chunk_length'"):
        S.PolicySpec.from_json(data)


def test_noise_input_for_stochastic_heads():
    inputs = spec_json()['inputs'] + [{'name': 'noise', 'dtype': 'float32', 'shape': [1, 16, 10]}]
    spec = S.PolicySpec.from_json(spec_json(head='flow', inputs=inputs))
    assert spec.expected_inputs()['noise'] == ('float32', (1, 16, 10))
    bad = spec_json(head='flow', inputs=inputs[:-1] + [dict(inputs[-1], shape=[1, 16, 8])])
    with pytest.raises(ValueError, match=r"spec input 'noise' is float32 \[1, 16, 8\]"):
        S.PolicySpec.from_json(bad)
