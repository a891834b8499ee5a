"""What a camera policy's cameras show of the push task's cube as the paddle comes to it: how
much of the cube each camera sees, by the TCP's distance to the cube, on a recording, and how
precisely the cube's position can be read from the front camera when it is in full view.

    .venv/bin/python bench/cube_visibility.py '<recording>/demos/*' --model models/default \\
        --json visibility.json
    .venv/bin/python bench/cube_visibility.py '<recording>/demos/*' --cameras \\
        '[{name: front, height: 72, width: 96, crop: [90, 75, 105, 140]}, {name: wrist, height: 48, width: 64}]'

The cameras are the model's (crop and size as its policy.json says) or `--cameras` (YAML, as
`data.cameras`); the cube is the red of the simulated scene (R − max(G, B) > 60 in the
policy image), the cube's and TCP's positions
come from the recording's /sim/task_state (`sim_objects`). Per distance band: the front
camera's cube pixels as a fraction of the same episode's first frame (the arm away), and the
share of frames in which the wrist camera shows none of it. The readout: the centroid of the
front camera's red pixels mapped to table x, y by a cubic polynomial, fitted on the frames
of all but the last `--held-out` episodes where the cube is in full view (≥ 90 % of its
first-frame pixels) and scored on the held-out episodes' layouts, which it never saw.
Prints median/p90/max and writes JSON; never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BANDS_CM = (0, 4, 6, 8, 10, 15, 100)
FULL_VIEW = 0.9


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('episodes', nargs='+', help='episode folders or globs (quote globs)')
    parser.add_argument('--model', default='default', help='whose cameras (policy folder)')
    parser.add_argument('--cameras', default=None,
                        help="these cameras instead (YAML list as data.cameras)")
    parser.add_argument('--held-out', type=int, default=10,
                        help='last episodes kept out of the readout fit (default 10)')
    parser.add_argument('--json', default=None, help='write the figures here')
    return parser.parse_args(argv)


def red_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] → bool [N, H, W]: the cube's red."""
    rgb = images.astype(np.int16)
    return rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) > 60


def cubic_terms(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v, u ** 3, u * u * v, u * v * v,
                     v ** 3], 1)


def figures(errors_mm: np.ndarray) -> dict:
    if errors_mm.size == 0:
        return {'frames': 0}
    return {'frames': int(errors_mm.size), 'median': round(float(np.median(errors_mm)), 1),
            'p90': round(float(np.percentile(errors_mm, 90)), 1),
            'max': round(float(errors_mm.max()), 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from bc_robot.core.spec import load_spec
    from bc_robot.graph import resolve_model
    from bc_robot.learning.config import DataConfig
    from bc_robot.learning.convert import convert_episodes, find_episodes
    cameras = (DataConfig(cameras=yaml.safe_load(args.cameras)).cameras if args.cameras
               else load_spec(resolve_model(args.model)).cameras)
    names = [c.name for c in cameras]
    if 'front' not in names:
        print(f'bench/cube_visibility.py: the model has no front camera ({names})',
              file=sys.stderr)
        return 2
    config = DataConfig(cameras=cameras, state_keys=('ee_position',),
                        auxiliary_keys=('sim_objects',), end_at_success='best')
    episodes = convert_episodes(find_episodes(args.episodes), config)
    if len(episodes) <= args.held_out:
        print(f'bench/cube_visibility.py: {len(episodes)} episodes, --held-out {args.held_out}'
              f' leaves none to fit on', file=sys.stderr)
        return 2
    rows = []  # per frame: episode, distance cm, front fraction, u, v, wrist px, cube x, y
    for index, episode in enumerate(episodes):
        front = red_pixels(episode.images['front'])
        count = front.sum((1, 2))
        h, w = front.shape[1:]
        ys, xs = np.mgrid[0:h, 0:w]
        u = (front * xs).sum((1, 2)) / np.maximum(count, 1) / w
        v = (front * ys).sum((1, 2)) / np.maximum(count, 1) / h
        wrist = (red_pixels(episode.images['wrist']).sum((1, 2)) if 'wrist' in names
                 else np.full(len(count), -1))
        offset = episode.auxiliary[:, :3]                      # cube − TCP
        cube = offset[:, :2] + episode.state[:, :2]
        rows.append(np.column_stack([np.full(len(count), index),
                                     100 * np.linalg.norm(offset[:, :2], axis=1),
                                     count / max(int(count[0]), 1), u, v, wrist, cube]))
    frames = np.concatenate(rows)
    episode, distance, fraction, u, v, wrist = frames[:, :6].T
    truth = frames[:, 6:8]
    held_out = episode >= len(episodes) - args.held_out
    full = fraction >= FULL_VIEW
    fit = full & ~held_out
    coefficients, *_ = np.linalg.lstsq(cubic_terms(u[fit], v[fit]), truth[fit], rcond=None)
    error_mm = 1000 * np.linalg.norm(cubic_terms(u, v) @ coefficients - truth, axis=1)
    bands = []
    for low, high in zip(BANDS_CM[:-1], BANDS_CM[1:]):
        band = (distance >= low) & (distance < high)
        if not band.any():
            continue
        seen = band & held_out & (fraction > 0)
        bands.append({
            'tcp_to_cube_cm': [low, high], 'frames': int(band.sum()),
            'front_fraction_p10': round(float(np.percentile(fraction[band], 10)), 2),
            'front_fraction_median': round(float(np.median(fraction[band])), 2),
            'front_full_view_share': round(float(full[band].mean()), 2),
            'wrist_none_share': (round(float((wrist[band] == 0).mean()), 2)
                                 if 'wrist' in names else None),
            'front_readout_mm_held_out': figures(error_mm[seen])})
    readout = {'full_view': figures(error_mm[held_out & full]),
               'partly_hidden': figures(error_mm[held_out & ~full & (fraction > 0)]),
               'not_seen_share': round(float((fraction[held_out] == 0).mean()), 3)}
    print(f'{len(episodes)} episodes, {len(frames)} frames; cameras {names}; readout fitted on '
          f'{int(fit.sum())} full-view frames of {len(episodes) - args.held_out} episodes')
    print('\n| TCP–cube (cm) | frames | front: cube seen p10 / median | front: full view | '
          'wrist: none seen | front readout, held out (mm) p50 / p90 / max |')
    print('| --- | --- | --- | --- | --- | --- |')
    for b in bands:
        r = b['front_readout_mm_held_out']
        wrist_none = '–' if b['wrist_none_share'] is None else f'{b["wrist_none_share"]:.0%}'
        print(f'| {b["tcp_to_cube_cm"][0]}–{b["tcp_to_cube_cm"][1]} | {b["frames"]} | '
              f'{b["front_fraction_p10"]:.0%} / {b["front_fraction_median"]:.0%} | '
              f'{b["front_full_view_share"]:.0%} | {wrist_none} | '
              f'{r.get("median", "–")} / {r.get("p90", "–")} / {r.get("max", "–")} |')
    for kind in ('full_view', 'partly_hidden'):
        r = readout[kind]
        print(f'- front readout on held-out layouts, cube {kind.replace("_", " ")}: '
              f'{r["frames"]} frames, median {r.get("median")} mm, p90 {r.get("p90")} mm, '
              f'max {r.get("max")} mm')
    if args.json:
        Path(args.json).write_text(json.dumps({'episodes': len(episodes), 'cameras': names,
                                               'bands': bands, 'readout': readout}, indent=1))
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
