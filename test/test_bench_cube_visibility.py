"""bench/cube_visibility.py's pure pieces: the cube's red is told from the table, the arm
and the goal, and the cubic readout maps a centroid back to table coordinates."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location('bench_cube_visibility',
                                                  REPO / 'bench' / 'cube_visibility.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_cube_red_counts():
    bench = _bench()
    image = np.zeros((1, 6, 8, 3), dtype=np.uint8)
    image[0, :, :] = (204, 184, 148)      # table
    image[0, 1, 1] = (200, 30, 30)        # cube
    image[0, 2, 2] = (150, 40, 40)        # cube in shadow
    image[0, 3, 3] = (40, 200, 60)        # goal
    image[0, 4, 4] = (220, 220, 220)      # arm
    assert np.argwhere(bench.red_pixels(image)[0]).tolist() == [[1, 1], [2, 2]]


def test_the_cubic_readout_recovers_a_perspective_mapping():
    bench = _bench()
    rng = np.random.default_rng(0)
    u, v = rng.uniform(0.1, 0.9, 200), rng.uniform(0.1, 0.9, 200)
    depth = 1.0 + 0.3 * v                  # a tilted camera: farther rows shrink
    table = np.column_stack([(u - 0.5) / depth, 0.6 - 0.4 * v / depth])
    fit, *_ = np.linalg.lstsq(bench.cubic_terms(u[:150], v[:150]), table[:150], rcond=None)
    error = np.linalg.norm(bench.cubic_terms(u[150:], v[150:]) @ fit - table[150:], axis=1)
    assert error.max() < 2e-3
    assert bench.figures(np.array([1.0, 2.0, 3.0])) == {'frames': 3, 'median': 2.0,
                                                         'p90': 2.8, 'max': 3.0}
    assert bench.figures(np.array([])) == {'frames': 0}
