"""sensor_msgs/Image and CompressedImage ⇄ arrays, through `bc_robot.core.image` (there is no
cv_bridge in a PyPI-only ROS 2): message fields in, message fields out, nothing else."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

from bc_robot.core.image import (array_to_image, decode_compressed_rgb8, encode_compressed,
                                 image_to_array, image_to_rgb8)


def image_msg_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image → array in its encoding's channel order (a view of msg.data when
    no byte swap is needed). ValueError names a bad encoding, step or data length."""
    return image_to_array(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                          msg.data)


def image_msg_to_rgb8(msg: Image | CompressedImage) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage → RGB uint8 (H, W, 3) for the policy path."""
    if isinstance(msg, CompressedImage):
        return decode_compressed_rgb8(msg.data, msg.format)
    return image_to_rgb8(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                         msg.data)


def image_to_msg(image: np.ndarray, encoding: str, frame_id: str, stamp: Time) -> Image:
    """Array in `encoding`'s channel order → sensor_msgs/Image (one copy)."""
    fields = array_to_image(image, encoding)
    msg = Image(height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.data = fields.data  # array.array('B'): the setter takes it without a per-byte check
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    return msg


def compressed_image_to_msg(image: np.ndarray, encoding: str, frame_id: str, stamp: Time,
                            fmt: str = 'jpeg', quality: int = 90) -> CompressedImage:
    """Array in `encoding` → sensor_msgs/CompressedImage (format as image_transport writes)."""
    format_text, data = encode_compressed(image, encoding, fmt, quality)
    msg = CompressedImage(format=format_text)
    msg.data = data
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    return msg
