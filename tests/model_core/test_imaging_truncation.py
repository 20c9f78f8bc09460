"""Cut-off images are refused with `image_truncated`: every row and column the header declares
must be in the data (Pillow itself pads some of these silently with black or gray)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from model_core.errors import ImageDecodeError
from model_core.imaging import declared_pixels, decode_image

MAX = 4096 * 4096
RNG = np.random.default_rng(7)
NOISE = RNG.integers(1, 255, (64, 64), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_by_hand(width: int, height: int, rows: bytes, *, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def filtered_rows(array: np.ndarray) -> bytes:
    return b"".join(b"\x00" + row.tobytes() for row in array)


def refused_as_truncated(data: bytes, max_pixels: int = MAX) -> str:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, max_pixels=max_pixels)
    assert caught.value.code == "image_truncated", caught.value
    assert caught.value.retriable is False
    return str(caught.value)


def sof_offset(jpeg: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        if (at := jpeg.find(marker)) >= 0:
            return at
    raise AssertionError("no SOF")


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    patched = bytearray(jpeg)
    struct.pack_into(">HH", patched, sof_offset(jpeg) + 5, height, width)
    return bytes(patched)


def test_a_hand_built_png_with_all_rows_decodes() -> None:
    assert np.array_equal(decode_image(png_by_hand(64, 64, filtered_rows(NOISE)), max_pixels=MAX), NOISE)


def test_png_whose_valid_zlib_stream_holds_half_the_rows() -> None:
    data = png_by_hand(64, 64, filtered_rows(NOISE[:32]))
    message = refused_as_truncated(data)
    assert "32 of 64 rows" in message


def test_png_16_bit_rgb_and_interlaced_short_streams() -> None:
    sixteen = RNG.integers(0, 65535, (20, 30), dtype=np.uint16).astype(">u2")
    whole = png_by_hand(30, 20, filtered_rows(sixteen), depth=16)
    assert np.array_equal(decode_image(whole, max_pixels=MAX), sixteen.astype(np.float32))
    refused_as_truncated(png_by_hand(30, 20, filtered_rows(sixteen)[:-1], depth=16))  # one byte short
    rgb = RNG.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    assert decode_image(png_by_hand(12, 10, filtered_rows(rgb.reshape(10, 36)), colour=2), max_pixels=MAX).shape == (
        10,
        12,
    )
    refused_as_truncated(png_by_hand(12, 10, filtered_rows(rgb.reshape(10, 36)[:9]), colour=2))
    # Adam7: a 64 x 64 8-bit image needs 4096 pixel bytes plus one filter byte per row of each pass.
    adam7_bytes = 4096 + 8 + 8 + 8 + 16 + 16 + 32 + 32
    refused_as_truncated(png_by_hand(64, 64, b"\x00" * (adam7_bytes - 1), interlace=1))
    assert decode_image(png_by_hand(64, 64, b"\x00" * adam7_bytes, interlace=1), max_pixels=MAX).shape == (64, 64)


def test_png_with_rows_split_over_idat_chunks_and_extra_data_after_them_is_whole() -> None:
    stream = zlib.compress(filtered_rows(NOISE) + b"\x00" * 10)  # trailing bytes past the last row: not a cut
    header = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    chunks = b"".join(png_chunk(b"IDAT", stream[i : i + 100]) for i in range(0, len(stream), 100))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + chunks + png_chunk(b"IEND", b"")
    assert np.array_equal(decode_image(data, max_pixels=MAX), NOISE)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_in_half_and_closed_with_eoi(progressive: bool) -> None:
    jpeg = encode(NOISE, "JPEG", quality=90, progressive=progressive)
    assert decode_image(jpeg, max_pixels=MAX).shape == (64, 64)
    refused_as_truncated(jpeg[: len(jpeg) // 2] + b"\xff\xd9")


def test_colour_and_restart_interval_jpegs_cut_and_closed() -> None:
    rgb = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    jpeg = encode(rgb, "JPEG", quality=90)
    assert decode_image(jpeg, max_pixels=MAX).shape == (64, 64)
    refused_as_truncated(jpeg[: len(jpeg) * 2 // 3] + b"\xff\xd9")
    restarts = encode(NOISE, "JPEG", quality=90, restart_marker_blocks=4)
    assert b"\xff\xd0" in restarts
    assert np.array_equal(
        decode_image(restarts, max_pixels=MAX), np.asarray(Image.open(io.BytesIO(restarts))).astype(np.float32)
    )
    refused_as_truncated(restarts[: len(restarts) // 2] + b"\xff\xd9")


def test_jpeg_whose_header_claims_far_more_than_its_data() -> None:
    jpeg = encode(NOISE, "JPEG", quality=90)
    message = refused_as_truncated(with_jpeg_size(jpeg, 8000, 8000), max_pixels=8000 * 8000)
    assert "8000 x 8000" in message
    refused_as_truncated(with_jpeg_size(jpeg, 64, 128))  # twice the rows: the second half never arrives
    refused_as_truncated(with_jpeg_size(jpeg, 72, 64))  # one column of blocks more: caught by decoding it again


def test_a_jpeg_header_far_larger_than_its_data_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: object) -> None:
        raise AssertionError("decoded 8000 x 8000 pixels to refuse them")

    jpeg = with_jpeg_size(encode(NOISE, "JPEG", quality=90, progressive=False), 8000, 8000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert "fewer than the" in refused_as_truncated(jpeg, max_pixels=8000 * 8000)


def test_progressive_jpeg_that_stops_after_its_first_scans() -> None:
    jpeg = encode(NOISE, "JPEG", quality=90, progressive=True)
    second_scan = jpeg.find(b"\xff\xda", jpeg.find(b"\xff\xda") + 2)
    cut = jpeg.rfind(b"\xff\xc4", 0, second_scan)  # the DHT before it, if any
    cut = cut if cut > jpeg.find(b"\xff\xda") else second_scan
    message = refused_as_truncated(jpeg[:cut] + b"\xff\xd9")  # a whole DC scan, no AC scans: blocks only
    assert "coefficients" in message


def test_a_complete_jpeg_without_trailing_bytes_decodes_exactly_as_pillow_does() -> None:
    jpeg = encode(NOISE, "JPEG", quality=75)
    expected = np.asarray(Image.open(io.BytesIO(jpeg))).astype(np.float32)
    assert np.array_equal(decode_image(jpeg, max_pixels=MAX), expected)
    assert np.array_equal(decode_image(jpeg + b"trailing junk", max_pixels=MAX), expected)


def tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """`data` (a little-endian TIFF from Pillow) with the single value of `tag` replaced."""
    patched = bytearray(data)
    ifd = struct.unpack_from("<I", patched, 4)[0]
    for index in range(struct.unpack_from("<H", patched, ifd)[0]):
        entry = ifd + 2 + 12 * index
        found, kind, count = struct.unpack_from("<HHI", patched, entry)
        if found == tag:
            assert count == 1
            struct.pack_into("<H" if kind == 3 else "<I", patched, entry + 8, value)
            return bytes(patched)
    raise KeyError(tag)


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_tiff_with_short_or_missing_strips(compression: str | None) -> None:
    tiff = encode(NOISE, "TIFF", **({} if compression is None else {"compression": compression}))
    assert np.array_equal(decode_image(tiff, max_pixels=MAX), NOISE)
    byte_count = Image.open(io.BytesIO(tiff)).tag_v2[279][0]
    refused_as_truncated(tiff_tag(tiff, 279, byte_count // 2))  # the strip holds half its rows
    refused_as_truncated(tiff_tag(tiff, 257, 128))  # 128 rows declared, one strip of 64
    refused_as_truncated(tiff_tag(tiff, 273, len(tiff) - 10))  # the strip runs past the end of the file


def test_uncompressed_tiff_cut_short_and_multi_strip_tiffs_still_decode() -> None:
    tiff = encode(NOISE, "TIFF")
    offset = Image.open(io.BytesIO(tiff)).tag_v2[273][0]
    refused_as_truncated(tiff[: offset + 2048])
    tall = RNG.integers(0, 65535, (300, 40), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(tall).save(buffer, format="TIFF", tiffinfo={278: 7})  # 43 strips, the last one short
    with Image.open(io.BytesIO(buffer.getvalue())) as check:
        assert len(check.tag_v2[273]) == 43
    assert np.array_equal(decode_image(buffer.getvalue(), max_pixels=MAX), tall.astype(np.float32))


def test_truncation_is_refused_whatever_pillows_global_flag_says() -> None:
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        refused_as_truncated(png_by_hand(64, 64, filtered_rows(NOISE[:32])))
        refused_as_truncated(encode(NOISE, "JPEG")[:300] + b"\xff\xd9")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_declared_pixels_reads_only_the_header() -> None:
    assert declared_pixels(encode(NOISE[:40, :60], "PNG")) == 2400
    assert declared_pixels(png_by_hand(8192, 8192, b"")) == 8192 * 8192  # nothing inflated
    assert declared_pixels(with_jpeg_size(encode(NOISE, "JPEG"), 8000, 6000)) == 48_000_000
    assert declared_pixels(encode(NOISE, "TIFF")) == 4096
    refused = (
        (b"", "image_empty"),
        (b"hello" * 40, "image_not_an_image"),
        (b"GIF89a" + bytes(64), "image_unsupported"),
        (png_by_hand(30_000, 30_000, b""), "image_too_large"),  # past Pillow's own bomb limit
    )
    for data, code in refused:
        with pytest.raises(ImageDecodeError) as caught:
            declared_pixels(data)
        assert caught.value.code == code


def test_a_tiny_png_declaring_30000_squared_is_refused_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: object) -> None:
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for side, cap in ((30_000, 4096 * 4096), (30_000, 10**12), (8192, 4096 * 4096)):
        data = png_by_hand(side, side, b"\x00" * 100)
        assert len(data) < 200
        with pytest.raises(ImageDecodeError) as caught:
            decode_image(data, max_pixels=cap)
        assert caught.value.code == "image_too_large"
