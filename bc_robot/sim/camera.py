"""Offscreen cameras of the sim scene (MuJoCo Renderer, EGL by default) and their intrinsics.

A GL context belongs to the thread that made it current, so a CameraRig is created, used and
closed on one thread (the sim_arm render thread). Only `capture` touches MjData; the caller
holds the physics lock for it and renders outside the lock, so physics keeps stepping while
the GPU/llvmpipe rasterizes.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import mujoco
import numpy as np


def camera_intrinsics(fovy_deg: float, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a MuJoCo pinhole camera (square pixels, vertical fovy)."""
    if not (0.0 < fovy_deg < 180.0):
        raise ValueError(f'fovy must be in (0, 180) degrees, got {fovy_deg!r}')
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


def camera_info_fields(fovy_deg: float, width: int, height: int) -> dict[str, Any]:
    """sensor_msgs/CameraInfo fields of an undistorted MuJoCo camera (plumb_bob, zero D)."""
    fx, fy, cx, cy = camera_intrinsics(fovy_deg, width, height)
    return {'distortion_model': 'plumb_bob', 'd': [0.0] * 5,
            'k': [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            'r': [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            'p': [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}


def check_cameras(model: mujoco.MjModel, names: Sequence[str], width: int, height: int) -> None:
    """ValueError naming an unknown camera or a size beyond the model's offscreen buffer."""
    known = [model.camera(i).name for i in range(model.ncam)]
    for name in names:
        if name not in known:
            raise ValueError(f'unknown camera {name!r}; the model has: {", ".join(known)}')
    if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
        raise ValueError(f'image size {width}x{height} exceeds the offscreen buffer '
                         f'{model.vis.global_.offwidth}x{model.vis.global_.offheight}')


class CameraRig:
    """One Renderer per camera (each keeps its own scene, so capture and render can split)."""

    def __init__(self, model: mujoco.MjModel, names: Sequence[str], width: int, height: int,
                 samples: int | None = None) -> None:
        """`samples`: multisample anti-aliasing per pixel (None: the model's own, MuJoCo's
        default 4). On a CPU (llvmpipe) resolving the samples costs more than drawing."""
        check_cameras(model, names, width, height)
        if samples is not None:
            if not isinstance(samples, int) or not 0 <= samples <= 16:
                raise ValueError(f'render samples must be an int in [0, 16], got {samples!r}')
            model.vis.quality.offsamples = samples  # read when a Renderer makes its buffers
        self.names = tuple(names)
        self.width, self.height = width, height
        self.fovy = {n: float(model.cam_fovy[model.camera(n).id]) for n in self.names}
        self._renderers: dict[str, mujoco.Renderer] = {}
        try:
            for name in self.names:
                self._renderers[name] = mujoco.Renderer(model, height=height, width=width)
        except Exception:
            self.close()
            raise

    def capture(self, data: mujoco.MjData) -> None:
        """Copy the current scene for every camera (call with the physics lock held)."""
        for name, renderer in self._renderers.items():
            renderer.update_scene(data, camera=name)

    def render(self) -> dict[str, np.ndarray]:
        """RGB uint8 images (height, width, 3) of the last captured scenes."""
        return {name: renderer.render() for name, renderer in self._renderers.items()}

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
