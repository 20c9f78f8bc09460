import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from model_core.errors import ImageDecodeError
from model_core.imaging import (
    decode_image,
    iter_image_files,
    load_image_file,
    normalise_intensity,
    preprocess,
)

MAX = 4096 * 4096


def encode(array: np.ndarray, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def ramp(dtype: type, high: int, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    return np.linspace(0, high, shape[0] * shape[1]).reshape(shape).astype(dtype)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes that declares width x height 8-bit gray pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)  # far less data than declared: the header alone must refuse it
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_8_and_16_bit_keep_their_raw_values(fmt: str) -> None:
    eight = ramp(np.uint8, 255)
    sixteen = ramp(np.uint16, 65535)
    assert np.array_equal(decode_image(encode(eight, fmt), max_pixels=MAX), eight.astype(np.float32))
    decoded = decode_image(encode(sixteen, fmt), max_pixels=MAX)
    assert decoded.dtype == np.float32
    assert decoded.max() == 65535.0
    assert np.array_equal(decoded, sixteen.astype(np.float32))


def test_float_tiff_and_big_endian_16_bit() -> None:
    floats = ramp(np.float32, 1) * 3.5 - 1.0
    assert np.allclose(decode_image(encode(floats, "TIFF"), max_pixels=MAX), floats)
    big = Image.frombytes("I;16B", (3, 2), np.array([[1, 2, 3], [4, 5, 60000]], dtype=">u2").tobytes())
    buffer = io.BytesIO()
    big.save(buffer, format="TIFF")
    assert decode_image(buffer.getvalue(), max_pixels=MAX).tolist() == [[1, 2, 3], [4, 5, 60000]]


def test_jpeg_and_colour_become_gray() -> None:
    gray = ramp(np.uint8, 255)
    assert np.abs(decode_image(encode(gray, "JPEG", quality=95), max_pixels=MAX) - gray).mean() < 3
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    decoded = decode_image(encode(rgb, "PNG"), max_pixels=MAX)
    assert decoded.shape == (8, 8)
    assert 100 < decoded[0, 0] < 200  # luminance of pure green
    rgba = np.dstack([rgb, np.full((8, 8), 255, np.uint8)])
    assert decode_image(encode(rgba, "PNG"), max_pixels=MAX).shape == (8, 8)
    palette = Image.fromarray(gray).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), max_pixels=MAX).shape == gray.shape


def test_multi_frame_tiff_gives_the_first_frame() -> None:
    frames = [Image.fromarray(np.full((4, 5), value, np.uint8)) for value in (7, 99)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    assert set(decode_image(buffer.getvalue(), max_pixels=MAX).ravel()) == {7.0}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "image_empty"),
        (b"this is a text file named scan.png\n" * 10, "image_not_an_image"),
        (bytes(range(256)) * 4, "image_not_an_image"),
        (b"GIF89a" + b"\x00" * 64, "image_unsupported"),
        (png_bomb(50_000, 50_000), "image_too_large"),
    ],
)
def test_bad_input_is_a_typed_error(data: bytes, code: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, max_pixels=MAX)
    assert caught.value.code == code
    assert caught.value.retriable is False


def test_truncated_images_are_refused_even_if_pillow_was_told_to_accept_them() -> None:
    png = encode(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), "PNG")
    jpeg = encode(ramp(np.uint8, 255, (64, 64)), "JPEG")
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what some other library in the process might do
    try:
        for data in (png[: len(png) // 2], jpeg[: len(jpeg) // 2], png[:20]):
            with pytest.raises(ImageDecodeError) as caught:
                decode_image(data, max_pixels=MAX)
            assert caught.value.code == "image_truncated"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_pixel_limit_is_checked_from_the_header_and_pillows_own_bomb_check_is_an_error() -> None:
    small = encode(ramp(np.uint8, 255, (100, 100)), "PNG")
    assert decode_image(small, max_pixels=10_000).shape == (100, 100)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(small, max_pixels=9_999)
    assert caught.value.code == "image_too_large"
    # Between Pillow's warning and error limits: a warning must not leak, it is a refusal.
    assert Image.MAX_IMAGE_PIXELS is not None
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(png_bomb(side, side), max_pixels=side * side * 2)
    assert caught.value.code == "image_too_large"


def test_normalise_keeps_16_bit_range_and_is_robust() -> None:
    image = np.full((100, 100), 30_000.0, np.float32)
    image[:, 50:] = 31_000.0  # a 16-bit contrast that /255 would crush to one value
    image[0, 0] = 65_535.0  # one hot pixel must not set the window
    before = image.copy()
    out = normalise_intensity(image)
    assert np.array_equal(image, before)  # the caller's array is left alone
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[50, 10] == 0.0 and out[50, 90] == 1.0


def test_normalise_constant_and_non_finite_give_zeros_not_nan() -> None:
    assert not normalise_intensity(np.full((5, 5), 7.0)).any()
    with_nan = np.arange(25, dtype=np.float32).reshape(5, 5)
    with_nan[0, 0] = np.nan
    with_nan[1, 1] = np.inf
    out = normalise_intensity(with_nan)
    assert np.isfinite(out).all()
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0
    assert not normalise_intensity(np.full((3, 3), np.nan)).any()


def test_preprocess_crops_the_centre_square_and_resizes() -> None:
    image = np.full((100, 300), 5000.0, np.float32)  # flanks the crop drops: they must not set the window
    image[:, 100:150] = 1000.0
    image[:, 150:200] = 2000.0
    out = preprocess(image, 32)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert np.array_equal(out[:, :16], np.zeros((32, 16))) and np.array_equal(out[:, 16:], np.ones((32, 16)))
    upscaled = preprocess(ramp(np.float32, 100, (10, 10)), 64)
    assert upscaled.shape == (64, 64) and upscaled.min() >= 0.0 and upscaled.max() <= 1.0
    with pytest.raises(ValueError):
        preprocess(np.zeros((0, 5)), 8)


def test_iter_image_files_recursive_sorted_case_insensitive(tmp_path: Path) -> None:
    for name in ("b/z.PNG", "a.tif", "b/c.TIFF", "d.jpeg", "e.JPG", "notes.txt", ".hidden.png", "f.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a.tif", "b/c.TIFF", "b/z.PNG", "d.jpeg", "e.JPG"]
    with pytest.raises(NotADirectoryError):
        list(iter_image_files(tmp_path / "a.tif"))


def test_real_16_bit_scan(real_scans: Path) -> None:
    raw = load_image_file(real_scans / "im_1.tif")
    assert raw.ndim == 2 and raw.max() > 255  # 16-bit values survive decoding
    model_input = preprocess(raw, 64)
    assert model_input.shape == (64, 64) and np.isfinite(model_input).all()
    assert model_input.std() > 0.05 and model_input.min() >= 0.0 and model_input.max() <= 1.0


def test_real_8_bit_scan(real_scans: Path) -> None:
    raw = load_image_file(real_scans / "cell_vol" / "im070.tif")
    assert raw.ndim == 2 and raw.max() <= 255
    model_input = preprocess(raw, 64)
    assert model_input.shape == (64, 64) and model_input.max() > 0.5 and model_input.std() > 0.05


REPO_REAL = Path(__file__).resolve().parents[2] / "producers" / "data" / "real"


@pytest.mark.parametrize(("name", "bits"), [("im_1.png", 16), ("cell_vol_im072.png", 8)])
def test_real_slices_round_trip_through_tiff(name: str, bits: int) -> None:
    # The repository's 256 px copies of the real scans, written as the scanner's TIFFs: these run
    # wherever the full scans above are not present (a clone outside the workplace).
    with Image.open(REPO_REAL / name) as image:
        original = np.asarray(image)
    assert original.dtype == (np.uint16 if bits == 16 else np.uint8)
    decoded = decode_image(encode(original, "TIFF", compression="tiff_lzw"), max_pixels=MAX)
    np.testing.assert_array_equal(decoded, original.astype(np.float32))
    model_input = preprocess(decoded, 64)
    assert model_input.std() > 0.05 and model_input.min() >= 0.0 and model_input.max() <= 1.0
