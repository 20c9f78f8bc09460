"""CT slices from bytes to model input: decode (PNG, TIFF, JPEG), normalise, square and resize.

Decoding is where untrusted bytes meet the detector, so every failure becomes an
`ImageDecodeError` with a code a dead letter can carry, and the pixel count is checked from the
header before a single pixel is decompressed (a 100-byte PNG can declare 50000 x 50000).

Intensities stay raw (float32) until `normalise_intensity`, which windows them by robust
percentiles: a 16-bit scan keeps its full dynamic range instead of being squeezed by 255.

`preprocess` makes a non-square slice square by a centre crop, not by padding: the cell sits in
the middle of the field of view, and padding would add a hard border the autoencoder never saw
in training.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from model_core.errors import ImageDecodeError

SUPPORTED_FORMATS = ("PNG", "TIFF", "JPEG")
SUPPORTED_EXTENSIONS = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg"})
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
PERCENTILE_SAMPLE = 1 << 16  # percentiles of a strided sample: the same window to ~0.1 %, a tenth of the time

# Signatures of image formats that are real images but not ones we score: they deserve
# `image_unsupported`, not `image_not_an_image`.
_OTHER_IMAGE_MAGIC = (b"GIF87a", b"GIF89a", b"BM", b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51", b"RIFF", b"DICM")
# Signatures of the formats we do read: unidentifiable after one of these means a damaged header.
_SUPPORTED_MAGIC = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff")
_RAW_MODES = frozenset({"L", "1", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV"})


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode one slice to a 2-D float32 array of its raw intensities (colour becomes gray; a
    multi-frame TIFF gives its first frame). Raises `ImageDecodeError`."""
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)", code="image_empty")
    # A process-wide flag another library may have set; with it Pillow fills a cut-off scan with
    # black and we would score half a battery as if it were whole.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                _check_size(image, max_pixels)
                image.seek(0)
                image.load()
                return _to_gray(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(f"the image is too large: {exc}", code="image_too_large") from exc
        except UnidentifiedImageError as exc:
            if data.startswith(_SUPPORTED_MAGIC):
                raise ImageDecodeError(
                    f"the image header is truncated or corrupt: {exc}", code="image_truncated"
                ) from exc
            if data.startswith(_OTHER_IMAGE_MAGIC):
                raise ImageDecodeError(
                    "unsupported image format (PNG, TIFF or JPEG expected)", code="image_unsupported"
                ) from exc
            raise ImageDecodeError("the data is not a PNG, TIFF or JPEG image", code="image_not_an_image") from exc
        except ImageDecodeError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow reports a cut-off or corrupt stream as any of these, depending on the plugin.
            raise ImageDecodeError(f"the image is truncated or corrupt: {exc}", code="image_truncated") from exc


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image has no pixels ({width} x {height})", code="image_empty")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"the image is too large: {width} x {height} pixels, at most {max_pixels} accepted", code="image_too_large"
        )


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in _RAW_MODES:
        array = np.asarray(image)
    elif image.mode in _COLOUR_MODES:
        array = np.asarray(image.convert("L"))
    else:
        raise ImageDecodeError(f"unsupported pixel mode {image.mode!r}", code="image_unsupported")
    if array.ndim != 2:
        raise ImageDecodeError(f"expected one gray channel, got shape {array.shape}", code="image_unsupported")
    return array.astype(np.float32)


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Window the intensities between their 0.5 and 99.5 percentiles onto [0, 1] (float32).

    Robust to a few hot or dead pixels; a constant image gives zeros; non-finite pixels (NaN
    outside a float TIFF's reconstruction circle) become 0 and never reach the model."""
    values = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite and not finite.any():
        return np.zeros(values.shape, dtype=np.float32)
    sample = values.ravel() if all_finite else values[finite]
    if sample.size > PERCENTILE_SAMPLE:
        sample = sample[:: sample.size // PERCENTILE_SAMPLE]
    low, high = (float(v) for v in np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if high <= low:  # nearly constant: fall back to the full range before giving up
        low, high = float(np.nanmin(values[finite])), float(np.nanmax(values[finite]))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = values - np.float32(low)  # a new array: the caller's image is never modified
    scaled *= np.float32(1.0 / (high - low))
    if not all_finite:
        scaled[~finite] = 0.0
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of a 2-D image."""
    height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """Model input from a decoded slice: centre-cropped square, normalised to [0, 1], resized to
    `(size, size)` float32 (area averaging when shrinking, so fine cracks are not aliased away)."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., :3].mean(axis=-1)  # a caller's colour array: gray like decode_image
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"expected a non-empty 2-D image, got shape {array.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    square = normalise_intensity(centre_square(array))
    if square.shape != (size, size):
        shrinking = square.shape[0] > size
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        square = np.asarray(Image.fromarray(square).resize((size, size), resample=resample))
    model_input: np.ndarray = np.clip(square, 0.0, 1.0).astype(np.float32, copy=False)
    return model_input


def load_image_file(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (see `decode_image`). Raises `OSError` when it cannot be read."""
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith(".")


def iter_image_files(directory: Path) -> Iterator[Path]:
    """Every PNG/TIFF/JPEG file under `directory`, recursively, in sorted path order (hidden
    files such as macOS `._` companions are skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    yield from sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
