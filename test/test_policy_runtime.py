"""ONNX Runtime backend on the code-built test policies: exact outputs, the RTC prefix
contract, provider selection, warm-up, and startup refusal naming each spec/graph mismatch."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from bc_robot.core.spec import CameraSpec
from bc_robot.runtime.onnx_backend import OnnxBackend, provider_candidates
from bc_robot.runtime.testing_models import (affine_function, build_model, circle_reference,
                                             make_spec, write_model)

STATE = np.array([[0.5, 0.1, 0.3, 1.0]], np.float32)  # ee_position, gripper


def feed(spec, state=STATE, image=128, prefix=None, weights=None):
    inputs = {'state': np.repeat(state, spec.history, axis=0)}
    for cam in spec.cameras:
        inputs[f'image.{cam.name}'] = np.full((spec.history, cam.height, cam.width, 3), image,
                                              np.uint8)
    if spec.accepts_prefix:
        inputs['prefix'] = prefix if prefix is not None else np.zeros(
            (spec.chunk_length, spec.action_dim), np.float32)
        inputs['prefix_weights'] = weights if weights is not None else np.zeros(
            spec.chunk_length, np.float32)
    return inputs


def test_affine_policy_is_exact(tmp_path):
    spec = make_spec(chunk_length=6)
    write_model(tmp_path, spec, function='affine')
    backend = OnnxBackend(tmp_path, providers='cpu', warmup=2)
    chunk = backend.infer(feed(spec))
    w, b = affine_function(spec)
    assert chunk.shape == (6, 8) and chunk.dtype == np.float32
    assert np.allclose(chunk, w @ STATE[0] + b, atol=1e-6)
    assert np.allclose(chunk[:, 0], 0.5 + 0.01 * np.arange(1, 7), atol=1e-6)
    assert len(backend.warmup_s) == 2


@pytest.mark.parametrize('representation', ['ee_pose_quat_gripper', 'ee_pose_rot6d_gripper'])
def test_circle_policy_matches_its_numpy_twin(tmp_path, representation):
    spec = make_spec(action_representation=representation, history=2)
    write_model(tmp_path, spec, function='circle', lead_s=0.1)
    chunk = OnnxBackend(tmp_path, providers='cpu').infer(feed(spec))
    assert np.allclose(chunk, circle_reference(spec, STATE[0, :3], lead_s=0.1), atol=1e-6)
    radius = np.linalg.norm(chunk[:, :2] - np.array([0.45, 0.08]), axis=1)
    assert np.allclose(radius, 0.08, atol=1e-6)


def test_prefix_policy_keeps_the_committed_actions(tmp_path):
    spec = make_spec(accepts_prefix=True, chunk_length=8)
    write_model(tmp_path, spec, function='affine')
    backend = OnnxBackend(tmp_path, providers='cpu')
    prefix = np.tile(np.array([0.3, 0.2, 0.1, 0, 0, 0, 1, 0], np.float32), (8, 1))
    weights = np.array([1, 1, 0.5, 0.25, 0, 0, 0, 0], np.float32)
    chunk = backend.infer(feed(spec, prefix=prefix, weights=weights))
    w, b = affine_function(spec)
    fresh = w @ STATE[0] + b
    assert np.allclose(chunk, weights[:, None] * prefix + (1 - weights[:, None]) * fresh, atol=1e-6)
    assert np.allclose(chunk[:2], prefix[:2])


def test_images_reach_the_graph(tmp_path):
    spec = make_spec(cameras=[('front', 16, 16)])
    write_model(tmp_path, spec, function='affine', image_gain=1.0, gripper=0.0)
    backend = OnnxBackend(tmp_path, providers='cpu', cameras=['front', 'wrist'])
    assert backend.infer(feed(spec, image=255))[0, -1] == pytest.approx(1.0)
    assert backend.infer(feed(spec, image=51))[0, -1] == pytest.approx(0.2)


def test_noise_input_is_filled_by_the_backend(tmp_path):
    spec = make_spec(noise=True, head='diffusion')
    write_model(tmp_path, spec, function='affine')
    chunk = OnnxBackend(tmp_path, providers='cpu').infer(feed(spec))
    assert np.all(np.isfinite(chunk))


def test_cpu_is_always_the_last_resort_and_gpu_only_if_it_loads():
    assert provider_candidates('cpu') == ['CPUExecutionProvider']
    auto = provider_candidates('auto')
    assert auto[-1] == 'CPUExecutionProvider'
    with pytest.raises(ValueError, match='providers'):
        provider_candidates('rocm')


def test_provider_in_use_is_what_the_session_reports(tmp_path):
    spec = make_spec()
    write_model(tmp_path, spec)
    backend = OnnxBackend(tmp_path, providers='auto')
    assert backend.provider == backend.session.get_providers()[0]
    if 'CUDAExecutionProvider' not in provider_candidates('auto'):
        assert backend.provider == 'CPUExecutionProvider'


# --- startup refusal: each mismatch named ------------------------------------------------

def test_wrong_input_name_is_refused(tmp_path):
    spec = make_spec()
    write_model(tmp_path, spec, model=build_model(spec, rename={'state': 'obs_state'}))
    with pytest.raises(ValueError, match="declares input 'state'.*obs_state"):
        OnnxBackend(tmp_path, providers='cpu')


def test_wrong_input_dtype_is_refused(tmp_path):
    spec = make_spec()
    write_model(tmp_path, spec, model=build_model(spec, dtypes={'state': 'float64'}))
    with pytest.raises(ValueError, match="input 'state': policy.json says float32, the ONNX graph "
                                         "says float64"):
        OnnxBackend(tmp_path, providers='cpu')


def test_wrong_input_shape_is_refused(tmp_path):
    spec = make_spec(cameras=[('front', 64, 64)])
    graph = build_model(make_spec(cameras=[('front', 32, 32)]))
    write_model(tmp_path, spec, model=graph)
    with pytest.raises(ValueError, match=r"input 'image.front': policy.json shape \[1, 1, 64, 64, 3\]"
                                         r" but the ONNX graph shape is \[1, 1, 32, 32, 3\]"):
        OnnxBackend(tmp_path, providers='cpu')


def test_chunk_length_disagreeing_with_the_graph_is_refused(tmp_path):
    write_model(tmp_path, make_spec(chunk_length=16), model=build_model(make_spec(chunk_length=8)))
    with pytest.raises(ValueError, match='chunk_length is 16 but the ONNX graph outputs 8 actions'):
        OnnxBackend(tmp_path, providers='cpu')


def test_camera_missing_from_the_configuration_is_refused(tmp_path):
    spec = make_spec(cameras=[CameraSpec('front', 16, 16), CameraSpec('wrist', 16, 16)])
    write_model(tmp_path, spec)
    with pytest.raises(ValueError, match=r"needs camera\(s\) \['wrist'\].*\['front'\]"):
        OnnxBackend(tmp_path, providers='cpu', cameras=['front'])


def test_graph_input_the_spec_does_not_declare_is_refused(tmp_path):
    write_model(tmp_path, make_spec(), model=build_model(make_spec(accepts_prefix=True)))
    with pytest.raises(ValueError, match="inputs policy.json does not declare: \\['prefix', "
                                         "'prefix_weights'\\]"):
        OnnxBackend(tmp_path, providers='cpu')


def test_swapped_onnx_file_is_refused_by_its_hash(tmp_path):
    spec = make_spec()
    write_model(tmp_path, spec)
    data = json.loads((tmp_path / 'policy.json').read_text())
    (tmp_path / 'policy.onnx').write_bytes(build_model(spec, gripper=0.5).SerializeToString())
    assert data['onnx_sha256']
    with pytest.raises(ValueError, match='sha256'):
        OnnxBackend(tmp_path, providers='cpu')


def test_observation_of_the_wrong_shape_is_refused_at_inference(tmp_path):
    spec = make_spec()
    write_model(tmp_path, spec)
    backend = OnnxBackend(tmp_path, providers='cpu')
    with pytest.raises(ValueError, match=r"'state' has shape \[1, 3\]"):
        backend.infer({'state': np.zeros((1, 3), np.float32)})
    with pytest.raises(ValueError, match="lacks 'state'"):
        backend.infer({})


def test_ort_is_real():
    assert 'CPUExecutionProvider' in ort.get_available_providers()
