"""core/image.py: raw and compressed image conversion, padding, byte order, error texts."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from bc_robot.core import image as im

RNG = np.random.default_rng(7)

# encoding → a small random array in that encoding's dtype and channel layout
SAMPLES = {
    'rgb8': RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    'bgr8': RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    'rgba8': RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    'bgra8': RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    'mono8': RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    'mono16': RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    '16UC1': RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    '32FC1': RNG.normal(size=(5, 7)).astype(np.float32),
}


def _wire(array_: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False):
    """Fields of an Image message built by hand (not with the code under test): rows of
    `padding` junk bytes after each row, values in the requested byte order."""
    dtype, channels = im.ENCODINGS[encoding]
    wire = array_.astype(dtype.newbyteorder('>' if bigendian else '<'))
    rows = wire.reshape(array_.shape[0], -1).view(np.uint8).reshape(array_.shape[0], -1)
    junk = np.full((array_.shape[0], padding), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, junk], axis=1).tobytes()
    return dict(height=array_.shape[0], width=array_.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=rows.shape[1] + padding, data=data)


@pytest.mark.parametrize('encoding', sorted(SAMPLES))
@pytest.mark.parametrize('padding', [0, 3, 8])
@pytest.mark.parametrize('bigendian', [False, True])
def test_decode_every_encoding_with_padding_and_byte_order(encoding, padding, bigendian):
    expected = SAMPLES[encoding]
    fields = _wire(expected, encoding, padding, bigendian)
    decoded = im.image_to_array(**fields)
    assert decoded.shape == expected.shape
    assert decoded.dtype == expected.dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize('encoding', sorted(SAMPLES))
def test_round_trip_through_message_fields(encoding):
    original = SAMPLES[encoding]
    fields = im.array_to_image(original, encoding)
    assert isinstance(fields.data, array.array) and fields.data.typecode == 'B'
    assert fields.is_bigendian == 0
    assert fields.step == original.shape[1] * im.bytes_per_pixel(encoding)
    assert len(fields.data) == fields.height * fields.step
    np.testing.assert_array_equal(im.image_to_array(**fields.as_dict()), original)


def test_decode_is_a_view_of_the_message_buffer_unless_copy_or_swap():
    fields = _wire(SAMPLES['rgb8'], 'rgb8', padding=4)
    buffer = bytearray(fields['data'])
    fields['data'] = buffer
    view = im.image_to_array(**fields)
    assert np.shares_memory(view, np.frombuffer(buffer, np.uint8))
    copied = im.image_to_array(**fields, copy=True)
    assert not np.shares_memory(copied, np.frombuffer(buffer, np.uint8))
    big = _wire(SAMPLES['mono16'], 'mono16', bigendian=True)
    big['data'] = bytearray(big['data'])
    swapped = im.image_to_array(**big)
    assert swapped.dtype.isnative
    assert not np.shares_memory(swapped, np.frombuffer(big['data'], np.uint8))


def test_accepts_array_array_list_and_ndarray_data():
    expected = SAMPLES['mono8']
    fields = _wire(expected, 'mono8')
    for data in (array.array('B', fields['data']), list(fields['data']),
                 np.frombuffer(fields['data'], np.uint8), memoryview(fields['data'])):
        np.testing.assert_array_equal(im.image_to_array(**dict(fields, data=data)), expected)


def test_data_that_is_not_bytes_is_named():
    with pytest.raises(ValueError, match=r'image data of type list is not bytes or a sequence'):
        im.image_to_array(1, 2, 'mono8', 0, 2, [1, 300])
    with pytest.raises(ValueError, match=r'image data of type NoneType'):
        im.image_to_array(1, 2, 'mono8', 0, 2, None)


def test_unaligned_float_rows_decode_correctly():
    # step 29 puts every row after the first at an odd address for a float32 image.
    expected = SAMPLES['32FC1']
    fields = _wire(expected, '32FC1', padding=1)
    np.testing.assert_array_equal(im.image_to_array(**fields), expected)


def test_empty_image_is_empty_array():
    decoded = im.image_to_array(0, 0, 'rgb8', 0, 0, b'')
    assert decoded.shape == (0, 0, 3)


# --- errors name the offending value ------------------------------------------------------

def test_unsupported_encoding_is_named():
    with pytest.raises(ValueError, match=r"unsupported image encoding 'yuv422'"):
        im.image_to_array(2, 2, 'yuv422', 0, 4, b'\0' * 8)
    with pytest.raises(ValueError, match=r"unsupported image encoding 'bayer_rggb8'"):
        im.array_to_image(np.zeros((2, 2), np.uint8), 'bayer_rggb8')
    with pytest.raises(ValueError, match=r"unsupported image encoding 'RGB8'"):
        im.to_rgb8(np.zeros((2, 2, 3), np.uint8), 'RGB8')


def test_data_length_mismatch_is_named():
    with pytest.raises(ValueError, match=r'data length 11 does not match height 2 × step 6 = 12'):
        im.image_to_array(2, 2, 'rgb8', 0, 6, b'\0' * 11)
    with pytest.raises(ValueError, match=r'data length 13 does not match'):
        im.image_to_array(2, 2, 'rgb8', 0, 6, b'\0' * 13)


def test_step_smaller_than_row_is_named():
    with pytest.raises(ValueError, match=r'step 5 is smaller than width 2 × 3 bytes per pixel '
                                         r'of rgb8 = 6'):
        im.image_to_array(2, 2, 'rgb8', 0, 5, b'\0' * 10)
    with pytest.raises(ValueError, match=r'step 7 is smaller than width 2 × 4 bytes per pixel '
                                         r'of 32FC1 = 8'):
        im.image_to_array(2, 2, '32FC1', 0, 7, b'\0' * 14)


def test_negative_or_non_int_geometry_is_named():
    with pytest.raises(ValueError, match=r'height -1'):
        im.image_to_array(-1, 2, 'mono8', 0, 2, b'')
    with pytest.raises(ValueError, match=r"width '2'"):
        im.image_to_array(2, '2', 'mono8', 0, 2, b'\0' * 4)


def test_array_that_does_not_fit_encoding_is_refused():
    with pytest.raises(ValueError, match=r'shape \[4, 4, 3\] does not fit encoding rgba8'):
        im.array_to_image(np.zeros((4, 4, 3), np.uint8), 'rgba8')
    with pytest.raises(ValueError, match=r'dtype float64 does not fit encoding 32FC1'):
        im.array_to_image(np.zeros((4, 4)), '32FC1')


# --- to_rgb8: the policy path --------------------------------------------------------------

def test_to_rgb8_reorders_colour_encodings():
    rgb = SAMPLES['rgb8']
    assert im.to_rgb8(rgb, 'rgb8') is rgb  # no copy when already RGB
    np.testing.assert_array_equal(im.to_rgb8(rgb[:, :, ::-1].copy(), 'bgr8'), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    np.testing.assert_array_equal(im.to_rgb8(np.concatenate([rgb, alpha], 2), 'rgba8'), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], 2)
    np.testing.assert_array_equal(im.to_rgb8(bgra, 'bgra8'), rgb)


def test_to_rgb8_from_mono_encodings_uses_a_fixed_scale():
    mono = SAMPLES['mono8']
    out = im.to_rgb8(mono, 'mono8')
    assert out.shape == mono.shape + (3,) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], mono)
    deep = np.array([[0, 257, 65535]], np.uint16)
    np.testing.assert_array_equal(im.to_rgb8(deep, 'mono16')[0, :, 0], [0, 1, 255])
    np.testing.assert_array_equal(im.to_rgb8(deep, '16UC1', value_range=(0, 514))[0, :, 0],
                                  [0, 128, 255])
    depth = np.array([[0.0, 0.5, 2.0, np.nan, -1.0]], np.float32)
    np.testing.assert_array_equal(im.to_rgb8(depth, '32FC1')[0, :, 0], [0, 128, 255, 0, 0])
    with pytest.raises(ValueError, match=r'value_range \(1.0, 1.0\)'):
        im.to_rgb8(depth, '32FC1', value_range=(1.0, 1.0))


def test_to_rgb8_refuses_array_of_the_wrong_kind():
    with pytest.raises(ValueError, match=r'array uint8 \[5, 7, 3\] is not a mono16 image'):
        im.to_rgb8(SAMPLES['rgb8'], 'mono16')


def test_image_to_rgb8_from_padded_bgr_wire():
    rgb = SAMPLES['rgb8']
    fields = _wire(rgb[:, :, ::-1].copy(), 'bgr8', padding=5)
    np.testing.assert_array_equal(im.image_to_rgb8(**fields), rgb)


# --- compressed ------------------------------------------------------------------------------

def _smooth_rgb(height=32, width=48) -> np.ndarray:
    """A gradient: JPEG keeps it within a few grey levels, unlike noise."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (height + width)],
                    axis=2).astype(np.uint8)


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed_round_trip_keeps_colours_in_rgb_order(fmt):
    rgb = _smooth_rgb()
    rgb[:8, :8] = (255, 0, 0)  # a red patch catches a swapped R/B
    format_text, data = im.encode_compressed(rgb, 'rgb8', fmt)
    assert format_text == f'rgb8; {fmt} compressed bgr8'
    assert isinstance(data, array.array)
    decoded, encoding = im.decode_compressed(data, format_text)
    assert encoding == 'rgb8' and decoded.shape == rgb.shape
    if fmt == 'png':
        np.testing.assert_array_equal(decoded, rgb)
    else:
        assert np.abs(decoded.astype(int) - rgb).mean() < 3.0
    assert decoded[3, 3, 0] > 200 and decoded[3, 3, 2] < 60


def test_compressed_decodes_what_an_independent_encoder_wrote():
    # cv2.imencode writes what image_transport's compressed plugin publishes (BGR input).
    rgb = _smooth_rgb()
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    for fmt in ('png', 'bgr8; png compressed bgr8', 'rgb8; png compressed bgr8', ' PNG '):
        np.testing.assert_array_equal(im.decode_compressed_rgb8(png.tobytes(), fmt), rgb)


def test_compressed_mono_and_16_bit_png():
    mono = SAMPLES['mono8']
    format_text, data = im.encode_compressed(mono, 'mono8', 'png')
    assert format_text == 'mono8; png compressed mono8'
    decoded, encoding = im.decode_compressed(data, format_text)
    assert encoding == 'mono8'
    np.testing.assert_array_equal(decoded, mono)
    rgb = im.decode_compressed_rgb8(data, format_text)
    np.testing.assert_array_equal(rgb[:, :, 1], mono)
    depth = SAMPLES['16UC1']
    format_text, data = im.encode_compressed(depth, '16UC1', 'png')
    assert format_text == '16UC1; png compressed mono16'
    decoded, encoding = im.decode_compressed(data, format_text)
    assert encoding == 'mono16'
    np.testing.assert_array_equal(decoded, depth)


def test_compressed_rgba_png_keeps_alpha_and_bgr_input_is_not_swapped():
    rgba = SAMPLES['rgba8']
    format_text, data = im.encode_compressed(rgba, 'rgba8', 'png')
    # image_transport writes colour as bgr8 (alpha dropped)
    assert format_text == 'rgba8; png compressed bgr8'
    np.testing.assert_array_equal(im.decode_compressed_rgb8(data, format_text), rgba[:, :, :3])
    bgr = SAMPLES['bgr8']
    _, data = im.encode_compressed(bgr, 'bgr8', 'png')
    np.testing.assert_array_equal(im.decode_compressed_rgb8(data, 'png'), bgr[:, :, ::-1])


def test_compressed_format_strings():
    assert im.parse_compressed_format('jpeg') == 'jpeg'
    assert im.parse_compressed_format('jpg') == 'jpeg'
    assert im.parse_compressed_format('rgb8; jpeg compressed bgr8') == 'jpeg'
    assert im.parse_compressed_format('bgr8; png compressed bgr8') == 'png'
    with pytest.raises(ValueError, match=r"unsupported compressed image format 'tiff'"):
        im.parse_compressed_format('tiff')
    with pytest.raises(ValueError, match=r"unsupported compressed image format ''"):
        im.parse_compressed_format('')
    with pytest.raises(ValueError, match=r"'16UC1; compressedDepth png'.*not supported"):
        im.parse_compressed_format('16UC1; compressedDepth png')
    with pytest.raises(ValueError, match=r'format None must be a string'):
        im.parse_compressed_format(None)


def test_compressed_errors_name_the_problem():
    _, png = im.encode_compressed(SAMPLES['rgb8'], 'rgb8', 'png')
    with pytest.raises(ValueError, match=r"format 'jpeg' says jpeg but the data is png"):
        im.decode_compressed(png, 'jpeg')
    with pytest.raises(ValueError, match=r"\('png'\) has no data"):
        im.decode_compressed(b'', 'png')
    with pytest.raises(ValueError, match=r'starts with 6e6f742061'):
        im.decode_compressed(b'not an image', 'png')
    truncated = bytes(png)[:20]
    with pytest.raises(ValueError, match=r'could not decode 20 bytes of png'):
        im.decode_compressed(truncated, 'png')
    with pytest.raises(ValueError, match=r'encoding mono16 is 16-bit: jpeg is 8-bit only'):
        im.encode_compressed(SAMPLES['mono16'], 'mono16', 'jpeg')
    with pytest.raises(ValueError, match=r'32FC1 cannot be compressed'):
        im.encode_compressed(SAMPLES['32FC1'], '32FC1', 'png')
    with pytest.raises(ValueError, match=r'JPEG quality 0 must be'):
        im.encode_compressed(SAMPLES['rgb8'], 'rgb8', 'jpeg', quality=0)
    with pytest.raises(ValueError, match=r'array uint8 \[5, 7, 3\] is not a mono8 image'):
        im.encode_compressed(SAMPLES['rgb8'], 'mono8', 'png')


def test_message_adapters_in_nodes_common():
    """The thin msg ⇄ fields adapters build real sensor_msgs messages (no rclpy.init)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage, Image

    from bc_robot.nodes.image_msgs import (compressed_image_to_msg, image_msg_to_array,
                                           image_msg_to_rgb8, image_to_msg)
    rgb = _smooth_rgb()
    msg = image_to_msg(rgb[:, :, ::-1], 'bgr8', 'cam', Time(sec=3, nanosec=5))
    assert isinstance(msg, Image) and msg.encoding == 'bgr8' and msg.header.frame_id == 'cam'
    assert msg.step == rgb.shape[1] * 3 and len(msg.data) == msg.height * msg.step
    np.testing.assert_array_equal(image_msg_to_array(msg), rgb[:, :, ::-1])
    np.testing.assert_array_equal(image_msg_to_rgb8(msg), rgb)
    compressed = compressed_image_to_msg(rgb, 'rgb8', 'cam', Time(sec=3), fmt='png')
    assert isinstance(compressed, CompressedImage)
    assert compressed.format == 'rgb8; png compressed bgr8'
    np.testing.assert_array_equal(image_msg_to_rgb8(compressed), rgb)
    msg.encoding = '8UC3'
    with pytest.raises(ValueError, match=r"unsupported image encoding '8UC3'"):
        image_msg_to_rgb8(msg)


def test_no_ros_import():
    """core/ must stay importable without a ROS install (training boxes)."""
    import subprocess
    import sys
    code = ('import sys, bc_robot.core.image; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("rclpy", "sensor_msgs")]; '
            'sys.exit(1 if bad else 0)')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0
