"""Loss curves as a PNG drawn with OpenCV (matplotlib is not a dependency): log-scale y,
train loss (raw, faint, and smoothed) and validation loss, labelled axes and ticks."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (40, 40, 40)
TRAIN, TRAIN_RAW, VAL = (200, 110, 30), (235, 205, 175), (40, 40, 220)  # BGR


def _smooth(values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def plot_losses(path: str | Path, train: Sequence[tuple[int, float]],
                val: Sequence[tuple[int, float]], title: str = '',
                size: tuple[int, int] = (480, 800)) -> Path:
    """Write the curves to `path` (PNG). train/val are (step, loss) pairs."""
    height, width = size
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 80, 20, 40, 50
    series = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in (train, val)]
    points = np.concatenate([s for s in series if s.size] or [np.zeros((0, 2))])
    points = points[np.isfinite(points[:, 1])] if points.size else points
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, title or 'loss', (left, 25), font, 0.6, BLACK, 1, cv2.LINE_AA)
    if points.size == 0:
        cv2.putText(image, 'no data yet', (width // 2 - 60, height // 2), font, 0.6, BLACK, 1)
        cv2.imwrite(str(path), image)
        return Path(path)
    positive = points[:, 1][points[:, 1] > 0]
    log_scale = positive.size == points.shape[0]
    ys = np.log10(points[:, 1]) if log_scale else points[:, 1]
    y_lo, y_hi = float(ys.min()), float(ys.max())
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_lo, x_hi = float(points[:, 0].min()), float(points[:, 0].max())
    if x_hi - x_lo < 1e-9:
        x_hi = x_lo + 1

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        yy = np.log10(np.maximum(y, 1e-30)) if log_scale else y
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (yy - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return np.stack([px, py], 1).round().astype(np.int32)

    # Grid and tick labels.
    for i in range(6):
        frac = i / 5
        yv = y_lo + frac * (y_hi - y_lo)
        py = int(round(height - bottom - frac * (height - top - bottom)))
        cv2.line(image, (left, py), (width - right, py), GREY, 1)
        label = f'{10 ** yv:.3g}' if log_scale else f'{yv:.3g}'
        cv2.putText(image, label, (5, py + 4), font, 0.4, BLACK, 1, cv2.LINE_AA)
        xv = x_lo + frac * (x_hi - x_lo)
        px = int(round(left + frac * (width - left - right)))
        cv2.line(image, (px, top), (px, height - bottom), GREY, 1)
        cv2.putText(image, f'{int(xv)}', (px - 15, height - bottom + 18), font, 0.4, BLACK, 1,
                    cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), BLACK, 1)
    cv2.putText(image, 'step', (width // 2 - 15, height - 10), font, 0.5, BLACK, 1, cv2.LINE_AA)
    train_arr, val_arr = series
    if train_arr.size:
        cv2.polylines(image, [to_px(train_arr[:, 0], train_arr[:, 1])], False, TRAIN_RAW, 1,
                      cv2.LINE_AA)
        smooth = _smooth(train_arr[:, 1]) if not log_scale else \
            10 ** _smooth(np.log10(train_arr[:, 1]))
        cv2.polylines(image, [to_px(train_arr[:, 0], smooth)], False, TRAIN, 2, cv2.LINE_AA)
    if val_arr.size:
        pts = to_px(val_arr[:, 0], val_arr[:, 1])
        cv2.polylines(image, [pts], False, VAL, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(image, tuple(int(v) for v in p), 3, VAL, -1, cv2.LINE_AA)
    legend_x = width - right - 170
    cv2.line(image, (legend_x, 20), (legend_x + 25, 20), TRAIN, 2)
    cv2.putText(image, 'train', (legend_x + 30, 24), font, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.line(image, (legend_x + 85, 20), (legend_x + 110, 20), VAL, 2)
    cv2.putText(image, 'val', (legend_x + 115, 24), font, 0.45, BLACK, 1, cv2.LINE_AA)
    if not math.isfinite(float(ys.min())):
        raise ValueError('loss values are not finite')
    if not cv2.imwrite(str(path), image):
        raise ValueError(f'could not write {path}')
    return Path(path)
