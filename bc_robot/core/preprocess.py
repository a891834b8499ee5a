"""The one observation preprocessing function, called by observation_node at deploy time and
by the dataset converter at training time: any difference between the two is train/deploy
skew, the most common silent failure in behavioral cloning."""
from __future__ import annotations

import cv2
import numpy as np

from bc_robot.core.spec import CameraSpec


def preprocess_image(rgb: np.ndarray, camera: CameraSpec) -> np.ndarray:
    """RGB uint8 HxWx3 frame → the policy's crop and size, RGB uint8 (camera.height,
    camera.width, 3). Area interpolation when shrinking (no aliasing), linear when growing."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'camera {camera.name!r}: expected an RGB uint8 HxWx3 frame, got '
                         f'{rgb.dtype} {list(rgb.shape)}')
    if camera.crop:
        top, left, height, width = camera.crop
        if top + height > rgb.shape[0] or left + width > rgb.shape[1]:
            raise ValueError(
                f'camera {camera.name!r}: crop {list(camera.crop)} (top, left, height, width) '
                f'does not fit the {rgb.shape[0]}x{rgb.shape[1]} frame')
        rgb = rgb[top:top + height, left:left + width]
    if rgb.shape[0] == camera.height and rgb.shape[1] == camera.width:
        return np.ascontiguousarray(rgb)
    shrinking = rgb.shape[0] >= camera.height and rgb.shape[1] >= camera.width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (camera.width, camera.height), interpolation=interpolation)
