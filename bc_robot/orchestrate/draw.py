"""Report figures as PNG, drawn with OpenCV + numpy (matplotlib is not a dependency): a
latency histogram, end-effector paths with the predicted chunks (top and side views), and
line charts (success rate against round and against labelled samples)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

WHITE, GREY, LIGHT, BLACK = (255, 255, 255), (205, 205, 205), (235, 235, 235), (40, 40, 40)
# BGR, colour-blind friendly (Okabe-Ito)
PALETTE = [(178, 114, 0), (0, 159, 230), (115, 158, 0), (167, 121, 204), (0, 94, 213),
           (66, 228, 240), (233, 180, 86), (0, 0, 0)]
SUCCESS, FAILURE = (115, 158, 0), (0, 94, 213)
CUBE, GOAL = (40, 40, 200), (60, 170, 60)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f'{value:.3g}' if abs(value) < 1e4 else f'{value:.2e}'


@dataclass
class Axes:
    """A plotting box on an image with data limits; `equal` keeps metres square."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    equal: bool = False

    def __post_init__(self) -> None:
        (x0, y0, x1, y1), (a, b), (c, d) = self.box, self.xlim, self.ylim
        if b <= a:
            b = a + 1.0
        if d <= c:
            d = c + 1.0
        if self.equal:  # widen the tighter axis so one metre is as long on both
            scale = min((x1 - x0) / (b - a), (y1 - y0) / (d - c))
            cx, cy, hw, hh = (a + b) / 2, (c + d) / 2, (x1 - x0) / scale / 2, (y1 - y0) / scale / 2
            a, b, c, d = cx - hw, cx + hw, cy - hh, cy + hh
        self.xlim, self.ylim = (a, b), (c, d)

    def px(self, xs: Sequence[float] | np.ndarray, ys: Sequence[float] | np.ndarray) -> np.ndarray:
        (x0, y0, x1, y1), (a, b), (c, d) = self.box, self.xlim, self.ylim
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        u = x0 + (xs - a) / (b - a) * (x1 - x0)
        v = y1 - (ys - c) / (d - c) * (y1 - y0)
        return np.stack([u, v], axis=-1).round().astype(np.int32)

    def frame(self, title: str = '', xlabel: str = '', ylabel: str = '') -> None:
        img, (x0, y0, x1, y1) = self.image, self.box
        for value in nice_ticks(*self.xlim):
            u = int(self.px([value], [self.ylim[0]])[0, 0])
            if x0 <= u <= x1:
                cv2.line(img, (u, y0), (u, y1), LIGHT, 1)
                cv2.putText(img, _label(value), (u - 12, y1 + 16), FONT, 0.38, BLACK, 1,
                            cv2.LINE_AA)
        for value in nice_ticks(*self.ylim):
            v = int(self.px([self.xlim[0]], [value])[0, 1])
            if y0 <= v <= y1:
                cv2.line(img, (x0, v), (x1, v), LIGHT, 1)
                text = _label(value)
                cv2.putText(img, text, (x0 - 8 - 7 * len(text), v + 4), FONT, 0.38, BLACK, 1,
                            cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
        if title:
            cv2.putText(img, title, (x0, y0 - 10), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
        if xlabel:
            cv2.putText(img, xlabel, ((x0 + x1) // 2 - 4 * len(xlabel), y1 + 36), FONT, 0.45,
                        BLACK, 1, cv2.LINE_AA)
        if ylabel:
            cv2.putText(img, ylabel, (max(2, x0 - 60), y0 - 10 if not title else y0 - 28),
                        FONT, 0.42, BLACK, 1, cv2.LINE_AA)

    def polyline(self, xs, ys, color, thickness: int = 1) -> None:
        pts = self.px(xs, ys)
        if len(pts) >= 2:
            cv2.polylines(self.image, [pts], False, color, thickness, cv2.LINE_AA)

    def points(self, xs, ys, color, radius: int = 3) -> None:
        for u, v in self.px(xs, ys):
            cv2.circle(self.image, (int(u), int(v)), radius, color, -1, cv2.LINE_AA)


def legend(image: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int]]],
           origin: tuple[int, int]) -> None:
    x, y = origin
    for text, color in entries:
        cv2.line(image, (x, y), (x + 22, y), color, 3, cv2.LINE_AA)
        cv2.putText(image, text, (x + 28, y + 4), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
        y += 18


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """BGR image → PNG; ValueError naming the path when it cannot be written."""
    path = Path(path)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f'could not write {path}')
    return path


def save_rgb(path: str | Path, rgb: np.ndarray, scale: int = 1) -> Path:
    """A camera frame (RGB uint8) as PNG, optionally enlarged (nearest neighbour)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if scale > 1:
        bgr = cv2.resize(bgr, (bgr.shape[1] * scale, bgr.shape[0] * scale),
                         interpolation=cv2.INTER_NEAREST)
    return write_png(path, bgr)


def histogram_png(path: str | Path, values: Sequence[float], title: str, xlabel: str,
                  marks: dict[str, float] | None = None, bins: int = 40,
                  size: tuple[int, int] = (420, 760)) -> Path:
    """Histogram of `values` with vertical marks (e.g. p50, p99)."""
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        cv2.putText(image, f'{title}: no samples', (40, height // 2), FONT, 0.6, BLACK, 1)
        return write_png(path, image)
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    ax = Axes(image, (70, 40, width - 20, height - 50), (lo, hi), (0, counts.max() * 1.1))
    ax.frame(f'{title} (n = {v.size})', xlabel, 'count')
    for count, a, b in zip(counts, edges[:-1], edges[1:]):
        if count:
            p0, p1 = ax.px([a, b], [0, count])
            cv2.rectangle(image, (int(p0[0]) + 1, int(p1[1])), (int(p1[0]) - 1, int(p0[1])),
                          PALETTE[0], -1)
    for i, (name, value) in enumerate((marks or {}).items()):
        if math.isfinite(value):
            u = int(ax.px([value], [0])[0, 0])
            color = PALETTE[(i + 1) % len(PALETTE)]
            cv2.line(image, (u, 40), (u, height - 50), color, 2)
            cv2.putText(image, f'{name} {value:.1f}', (min(u + 4, width - 120), 58 + 16 * i),
                        FONT, 0.45, color, 1, cv2.LINE_AA)
    return write_png(path, image)


def lines_png(path: str | Path, panels: Sequence[dict[str, Any]],
              size: tuple[int, int] = (420, 520)) -> Path:
    """Side-by-side line charts. Each panel: title, xlabel, ylabel, ylim (optional) and
    series = [(label, xs, ys), ...]; points are marked, the legend sits in the panel."""
    height, width = size
    image = np.full((height, width * len(panels), 3), 255, np.uint8)
    for k, panel in enumerate(panels):
        series = panel['series']
        xs = [x for _, sx, _ in series for x in sx if math.isfinite(x)]
        ys = [y for _, _, sy in series for y in sy if math.isfinite(y)]
        xlim = (min(xs, default=0.0), max(xs, default=1.0))
        pad = 0.05 * (xlim[1] - xlim[0] or 1.0)
        ylim = panel.get('ylim') or (min(ys, default=0.0), max(ys, default=1.0))
        ax = Axes(image, (k * width + 70, 50, (k + 1) * width - 20, height - 60),
                  (xlim[0] - pad, xlim[1] + pad), ylim)
        ax.frame(panel.get('title', ''), panel.get('xlabel', ''), panel.get('ylabel', ''))
        entries = []
        for i, (label, sx, sy) in enumerate(series):
            color = PALETTE[i % len(PALETTE)]
            ax.polyline(sx, sy, color, 2)
            ax.points(sx, sy, color, 4)
            entries.append((label, color))
        legend(image, entries, (k * width + 80, 66))
    return write_png(path, image)


def paths_png(path: str | Path, episodes: Sequence[dict[str, Any]],
              workspace: tuple[Sequence[float], Sequence[float]] = ((0.2, -0.4, 0.0),
                                                                    (0.8, 0.4, 0.6)),
              size: tuple[int, int] = (520, 1040), max_chunks: int = 60) -> Path:
    """End-effector paths (solid: green = success, red = failure) with the policy's
    predicted chunks (thin, lighter, a dot at each chunk's first action), cube start (red
    square) and goal (green circle), seen from above (x-y) and from the side (x-z).
    Each episode dict: path [[t, x, y, z], ...], chunks [[[x, y, z], ...], ...], success,
    scene (task_state at start)."""
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    low, high = workspace
    half = width // 2
    top = Axes(image, (70, 50, half - 20, height - 60), (low[0], high[0]), (low[1], high[1]),
               equal=True)
    side = Axes(image, (half + 70, 50, width - 20, height - 60), (low[0], high[0]),
                (low[2], high[2]), equal=True)
    top.frame('top view', 'x (m)', 'y (m)')
    side.frame('side view', 'x (m)', 'z (m)')
    for ax, (i, j) in ((top, (0, 1)), (side, (0, 2))):
        ax.polyline([low[i], high[i], high[i], low[i], low[i]],
                    [low[j], low[j], high[j], high[j], low[j]], GREY, 1)  # workspace box
    for episode in episodes:
        color = SUCCESS if episode.get('success') else FAILURE
        light = tuple(int(255 - 0.45 * (255 - c)) for c in color)
        scene = episode.get('scene') or {}
        if 'goal' in scene:
            gx, gy = scene['goal'][:2]
            u, v = top.px([gx], [gy])[0]
            radius = max(3, int(abs(top.px([gx + scene.get('success_radius', 0.02)], [gy])[0, 0]
                                    - u)))
            cv2.circle(image, (int(u), int(v)), radius, GOAL, 2, cv2.LINE_AA)
        for key in ('cube', 'marker'):
            if key in scene:
                x, y, z = scene[key][:3]
                for ax, (a, b) in ((top, (x, y)), (side, (x, z))):
                    u, v = ax.px([a], [b])[0]
                    cv2.rectangle(image, (int(u) - 4, int(v) - 4), (int(u) + 4, int(v) + 4),
                                  CUBE, -1)
        chunks = episode.get('chunks') or []
        stride = max(1, len(chunks) // max_chunks)
        for chunk in chunks[::stride]:
            c = np.asarray(chunk, dtype=np.float64).reshape(-1, 3)
            if len(c) == 0:
                continue
            top.polyline(c[:, 0], c[:, 1], light, 1)
            side.polyline(c[:, 0], c[:, 2], light, 1)
            top.points(c[:1, 0], c[:1, 1], light, 2)
            side.points(c[:1, 0], c[:1, 2], light, 2)
        p = np.asarray(episode.get('path') or [], dtype=np.float64).reshape(-1, 4)
        if len(p):
            top.polyline(p[:, 1], p[:, 2], color, 2)
            side.polyline(p[:, 1], p[:, 3], color, 2)
            top.points(p[:1, 1], p[:1, 2], BLACK, 3)
            side.points(p[:1, 1], p[:1, 3], BLACK, 3)
    legend(image, [('TCP path, success', SUCCESS), ('TCP path, failure', FAILURE),
                   ('predicted chunks', tuple(int(255 - 0.45 * (255 - c)) for c in SUCCESS)),
                   ('cube start', CUBE), ('goal', GOAL)], (half + 80, 62))
    return write_png(path, image)
