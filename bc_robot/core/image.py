"""sensor_msgs/Image and CompressedImage ⇄ numpy, without cv_bridge and without rclpy.

Functions work on the message's plain fields (height, width, encoding, is_bigendian, step,
data) so they run in the image callback, in the dataset converter reading bags, and in unit
tests alike. Decoding is vectorised: a raw image becomes a strided numpy *view* of the
message buffer (row padding skipped through strides, no copy) unless a byte swap is needed;
encoding copies once into an `array.array('B')`, the type rclpy stores `uint8[]` in, so the
message setter does not walk the bytes in Python.

Malformed input (unknown encoding, data length ≠ height × step, step < width × pixel size,
undecodable compressed bytes) raises ValueError naming the offending value: a camera driver
misconfiguration must show up as a message a user can act on, not as a garbled frame.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# encoding → (element dtype, channels). The order of the channels is the encoding's own
# (bgr8 arrays are B, G, R); `to_rgb8` is the one place that reorders.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '16UC1': (np.dtype(np.uint16), 1),
    '32FC1': (np.dtype(np.float32), 1),
}

COMPRESSED_FORMATS = ('jpeg', 'png')

# Full scale used by `to_rgb8` for non-8-bit encodings: fixed, never per frame, so the same
# scene gives the same pixels in training and at deploy time.
DEFAULT_VALUE_RANGE = {
    'mono16': (0.0, 65535.0),
    '16UC1': (0.0, 65535.0),
    '32FC1': (0.0, 1.0),
}


@dataclass(frozen=True)
class ImageFields:
    """The fields of a sensor_msgs/Image apart from the header."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any  # bytes-like; array.array('B') when produced here

    def as_dict(self) -> dict[str, Any]:
        return {'height': self.height, 'width': self.width, 'encoding': self.encoding,
                'is_bigendian': self.is_bigendian, 'step': self.step, 'data': self.data}


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """(dtype, channels) of a supported encoding, or ValueError naming it."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ValueError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(ENCODINGS)}') from None


def bytes_per_pixel(encoding: str) -> int:
    dtype, channels = encoding_info(encoding)
    return dtype.itemsize * channels


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """A flat uint8 view of any bytes-like (bytes, bytearray, memoryview, array.array,
    ndarray) without copying; a list of ints (a hand-built message) is copied once."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.flags.c_contiguous \
            else np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (OverflowError, TypeError, ValueError):
        raise ValueError(f'image data of type {type(data).__name__} is not bytes or a '
                         f'sequence of ints in [0, 255]') from None


def image_to_array(height: int, width: int, encoding: str, is_bigendian: int | bool,
                   step: int, data: Any, copy: bool = False) -> np.ndarray:
    """Raw image fields → array of shape (height, width) for one channel or
    (height, width, channels), native byte order, channels in the encoding's order.

    Without `copy` the result is a view of `data` whenever no byte swap is needed (it is
    then only valid while the message lives and writable only if `data` is)."""
    dtype, channels = encoding_info(encoding)
    for name, value in (('height', height), ('width', width), ('step', step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f'image {name} {value!r} must be a non-negative int')
    height, width, step = int(height), int(width), int(step)
    pixel = dtype.itemsize * channels
    if step < width * pixel:
        raise ValueError(f'image step {step} is smaller than width {width} × {pixel} bytes per '
                         f'pixel of {encoding} = {width * pixel}')
    buffer = _as_uint8_buffer(data)
    if buffer.size != height * step:
        raise ValueError(f'image data length {buffer.size} does not match height {height} × '
                         f'step {step} = {height * step} ({encoding} {width}x{height})')
    order = '>' if is_bigendian else '<'
    wire = dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype
    shape = (height, width, channels)
    strides = (step, pixel, dtype.itemsize)
    if height == 0 or width == 0:
        result = np.zeros(shape, dtype=dtype)
    else:
        result = np.ndarray(shape=shape, dtype=wire, buffer=buffer, strides=strides)
        if wire != dtype:  # needs a byte swap: the only unavoidable copy
            result = result.astype(dtype)
        elif copy:
            result = result.copy()
    return result[:, :, 0] if channels == 1 else result


def array_to_image(array_: np.ndarray, encoding: str) -> ImageFields:
    """Array (in the encoding's channel order) → Image fields, little-endian, no padding.

    `data` is an `array.array('B')`: assign it to `msg.data` directly."""
    dtype, channels = encoding_info(encoding)
    a = np.asarray(array_)
    expected = '(height, width)' if channels == 1 else f'(height, width, {channels})'
    if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if (channels == 1 and a.ndim != 2) \
            or (channels > 1 and (a.ndim != 3 or a.shape[2] != channels)):
        raise ValueError(f'array of shape {list(a.shape)} does not fit encoding {encoding}: '
                         f'expected {expected}')
    if a.dtype != dtype:
        raise ValueError(f'array dtype {a.dtype} does not fit encoding {encoding}: '
                         f'expected {dtype}')
    a = np.ascontiguousarray(a, dtype=dtype.newbyteorder('<') if dtype.itemsize > 1 else dtype)
    data = array.array('B')
    data.frombytes(memoryview(a).cast('B'))
    height, width = a.shape[:2]
    return ImageFields(height=height, width=width, encoding=encoding, is_bigendian=0,
                       step=width * dtype.itemsize * channels, data=data)


def to_rgb8(image: np.ndarray, encoding: str,
            value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Any supported encoding's array → RGB uint8 (H, W, 3), the policy's input format.

    Colour encodings are reordered (alpha dropped); mono is replicated into three channels.
    16-bit and float images are mapped linearly from a FIXED `value_range` (defaults:
    0..65535, and 0..1 for 32FC1) to 0..255 with clipping, NaN → 0: a per-frame
    normalisation would make the same scene look different from frame to frame."""
    dtype, channels = encoding_info(encoding)
    a = np.asarray(image)
    want_shape = 2 if channels == 1 else 3
    if a.ndim != want_shape or (channels > 1 and a.shape[2] != channels) or a.dtype != dtype:
        raise ValueError(f'array {a.dtype} {list(a.shape)} is not a {encoding} image')
    if encoding == 'rgb8':
        return a
    if encoding == 'bgr8':
        return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    if encoding == 'rgba8':
        return cv2.cvtColor(a, cv2.COLOR_RGBA2RGB)
    if encoding == 'bgra8':
        return cv2.cvtColor(a, cv2.COLOR_BGRA2RGB)
    if encoding != 'mono8':
        low, high = value_range if value_range is not None else DEFAULT_VALUE_RANGE[encoding]
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f'value_range {value_range!r} must be finite with high > low')
        scaled = (a.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        a = np.clip(scaled + 0.5, 0.0, 255.0).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_GRAY2RGB)


def image_to_rgb8(height: int, width: int, encoding: str, is_bigendian: int | bool,
                  step: int, data: Any) -> np.ndarray:
    """Raw image fields straight to RGB uint8 (the observation path)."""
    return to_rgb8(image_to_array(height, width, encoding, is_bigendian, step, data), encoding)


def parse_compressed_format(fmt: str) -> str:
    """The codec ('jpeg' or 'png') named by a CompressedImage format string such as 'jpeg',
    'png', 'rgb8; jpeg compressed bgr8' or 'mono16; png compressed mono16'."""
    if not isinstance(fmt, str):
        raise ValueError(f'compressed image format {fmt!r} must be a string')
    text = fmt.strip().lower()
    if 'compresseddepth' in text:
        raise ValueError(f'compressed image format {fmt!r} (compressedDepth) is not supported; '
                         f'publish depth raw or as "16UC1; png compressed mono16"')
    codec_part = text.split(';', 1)[1] if ';' in text else text
    words = codec_part.replace(',', ' ').split()
    codec = words[0] if words else ''
    codec = 'jpeg' if codec == 'jpg' else codec
    if codec not in COMPRESSED_FORMATS:
        raise ValueError(f'unsupported compressed image format {fmt!r}; expected jpeg or png, '
                         f'e.g. "jpeg" or "rgb8; jpeg compressed bgr8"')
    return codec


_MAGIC = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}


def decode_compressed(data: Any, fmt: str) -> tuple[np.ndarray, str]:
    """CompressedImage bytes → (array, encoding) keeping depth: 'rgb8' for colour, 'rgba8'
    for PNG with alpha, 'mono8' or 'mono16' for grey."""
    codec = parse_compressed_format(fmt)
    buffer = _as_uint8_buffer(data)
    if buffer.size == 0:
        raise ValueError(f'compressed image ({fmt!r}) has no data')
    head = buffer[:8].tobytes()
    if not head.startswith(_MAGIC[codec]):
        actual = next((name for name, magic in _MAGIC.items() if head.startswith(magic)), None)
        raise ValueError(f'compressed image format {fmt!r} says {codec} but the data '
                         + (f'is {actual}' if actual else f'starts with {head.hex()}'))
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError(f'could not decode {buffer.size} bytes of {codec} ({fmt!r})')
    if decoded.ndim == 2:
        if decoded.dtype == np.uint8:
            return decoded, 'mono8'
        if decoded.dtype == np.uint16:
            return decoded, 'mono16'
    elif decoded.dtype == np.uint8 and decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), 'rgb8'
    elif decoded.dtype == np.uint8 and decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA), 'rgba8'
    raise ValueError(f'decoded {codec} image {decoded.dtype} {list(decoded.shape)} ({fmt!r}) '
                     f'is not 8-bit colour or 8/16-bit grey')


def decode_compressed_rgb8(data: Any, fmt: str) -> np.ndarray:
    """CompressedImage bytes → RGB uint8 (H, W, 3), the observation path."""
    image, encoding = decode_compressed(data, fmt)
    return to_rgb8(image, encoding)


def encode_compressed(image: np.ndarray, encoding: str = 'rgb8', fmt: str = 'jpeg',
                      quality: int = 90) -> tuple[str, array.array]:
    """Array in `encoding` → (format string, data) as image_transport's compressed plugin
    writes them, e.g. ('rgb8; jpeg compressed bgr8', bytes). JPEG takes 8-bit images; PNG
    also keeps mono16/16UC1 losslessly. `quality` is JPEG quality (1–100)."""
    codec = parse_compressed_format(fmt)
    dtype, channels = encoding_info(encoding)
    a = np.asarray(image)
    if a.dtype != dtype or a.ndim != (2 if channels == 1 else 3) \
            or (channels > 1 and a.shape[2] != channels):
        raise ValueError(f'array {a.dtype} {list(a.shape)} is not a {encoding} image')
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f'JPEG quality {quality!r} must be an int in [1, 100]')
    if encoding == '32FC1':
        raise ValueError('encoding 32FC1 cannot be compressed as jpeg or png; publish it raw')
    if codec == 'jpeg' and dtype.itemsize != 1:
        raise ValueError(f'encoding {encoding} is 16-bit: jpeg is 8-bit only, use png')
    if channels == 1:
        target = 'mono8' if dtype.itemsize == 1 else 'mono16'
        bgr = a
    else:
        conversions = {'rgb8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGBA2BGR,
                       'bgra8': cv2.COLOR_BGRA2BGR}
        bgr = cv2.cvtColor(a, conversions[encoding]) if encoding in conversions else a
        target = 'bgr8'
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if codec == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if codec == 'jpeg' else '.png',
                               np.ascontiguousarray(bgr), params)
    if not ok:
        raise ValueError(f'{codec} encoding of a {encoding} {list(a.shape)} image failed')
    data = array.array('B')
    data.frombytes(memoryview(encoded).cast('B'))
    return f'{encoding}; {codec} compressed {target}', data
