"""Image conversion benchmark: what the camera callback pays per frame.

    .venv/bin/python bench/image.py --json out.json

Times core/image.py on a 640x480 frame: raw Image fields → array (rgb8 and a padded bgr8
row layout), → RGB for the policy (bgr8, mono16), array → Image fields (for publishing),
and CompressedImage jpeg/png decode and encode. Prints median/p99/max in microseconds;
never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bc_robot.core import image as im  # noqa: E402


def stats_us(samples_ns: list[int]) -> dict[str, float]:
    v = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {'n': int(v.size), 'p50_us': float(np.percentile(v, 50)),
            'p99_us': float(np.percentile(v, 99)), 'max_us': float(v.max())}


def timed(func, repeats: int) -> dict[str, float]:
    func()  # warm-up (allocations, codec tables)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        func()
        samples.append(time.perf_counter_ns() - start)
    return stats_us(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--json', type=Path, help='write the figures here')
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    h, w = args.height, args.width
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], 2).astype(np.uint8)
    rgb_fields = im.array_to_image(rgb, 'rgb8').as_dict()
    padded = np.zeros((h, w * 3 + 64), np.uint8)
    padded[:, :w * 3] = rgb.reshape(h, -1)
    bgr_fields = dict(height=h, width=w, encoding='bgr8', is_bigendian=0, step=w * 3 + 64,
                      data=padded.tobytes())
    depth_fields = im.array_to_image(
        rng.integers(0, 65535, (h, w), dtype=np.uint16), 'mono16').as_dict()
    jpeg_format, jpeg = im.encode_compressed(smooth, 'rgb8', 'jpeg')
    png_format, png = im.encode_compressed(smooth, 'rgb8', 'png')

    cases = {
        'rgb8 fields -> array (view)': lambda: im.image_to_array(**rgb_fields),
        'bgr8 padded fields -> rgb8': lambda: im.image_to_rgb8(**bgr_fields),
        'mono16 fields -> rgb8': lambda: im.image_to_rgb8(**depth_fields),
        'rgb8 array -> fields (publish)': lambda: im.array_to_image(rgb, 'rgb8'),
        'jpeg decode -> rgb8': lambda: im.decode_compressed_rgb8(jpeg, jpeg_format),
        'png decode -> rgb8': lambda: im.decode_compressed_rgb8(png, png_format),
        'jpeg encode (q90)': lambda: im.encode_compressed(smooth, 'rgb8', 'jpeg'),
    }
    results = {}
    print(f'image conversion, {w}x{h}, {args.repeats} repeats (microseconds)')
    print(f'{"case":34s} {"median":>10s} {"p99":>10s} {"max":>10s}')
    for name, func in cases.items():
        figures = timed(func, args.repeats)
        results[name] = figures
        print(f'{name:34s} {figures["p50_us"]:10.1f} {figures["p99_us"]:10.1f} '
              f'{figures["max_us"]:10.1f}')
    if args.json:
        args.json.write_text(json.dumps({'width': w, 'height': h, 'repeats': args.repeats,
                                         'cases': results}, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
