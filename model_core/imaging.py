"""CT slices from bytes to model input: decode (PNG, TIFF, JPEG), normalise, square and resize.

Decoding is where untrusted bytes meet the detector, so every failure becomes an
`ImageDecodeError` with a code a dead letter can carry, and the pixel count is checked from the
header before a single pixel is decompressed (a 100-byte PNG can declare 50000 x 50000), and an
image whose data ends before the last row its header declares is refused, never padded: a short
PNG stream, a JPEG scan ended early by a marker, a TIFF with short or missing strips
(docs/IMAGES.md). `declared_pixels` reads the header alone, for a decode budget.

Intensities stay raw (float32) until `normalise_intensity`, which windows them by robust
percentiles: a 16-bit scan keeps its full dynamic range instead of being squeezed by 255.

`preprocess` makes a non-square slice square by a centre crop, not by padding: the cell sits in
the middle of the field of view, and padding would add a hard border the autoencoder never saw
in training.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

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
    multi-frame TIFF gives its first frame). Every row and column the header declares must be in
    the data, or it is `image_truncated` (the checks per format are below). Raises `ImageDecodeError`."""
    with _opened(data) as image:
        _check_size(image, max_pixels)
        image.seek(0)
        if image.format == "PNG":
            _check_png_rows(data)
        elif image.format == "TIFF":
            _check_tiff_strips(image, len(data))
        jpeg = _jpeg_layout(data) if image.format in _JPEG_FORMATS else None
        if jpeg is not None:
            _check_jpeg_scans(jpeg)
        image.load()
        if jpeg is not None:
            _check_jpeg_probe(data, jpeg, image)
        return _to_gray(image)


def declared_pixels(data: bytes) -> int:
    """Width x height from the header alone (the first frame of a TIFF), nothing decompressed: what a
    caller reserves from a decode budget before `decode_image`. Raises `ImageDecodeError` for what is
    no PNG, TIFF or JPEG, and `image_too_large` for what Pillow refuses outright as a bomb."""
    with _opened(data) as image:
        width, height = image.size
        return int(width) * int(height)


@contextmanager
def _opened(data: bytes) -> Iterator[ImageFile.ImageFile]:
    """The image `data` holds, opened lazily (header only), with every failure inside the block
    turned into an `ImageDecodeError`."""
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)", code="image_empty")
    # A process-wide flag another library may have set; with it Pillow fills a cut-off scan with
    # black and we would score half a battery as if it were whole.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                yield image
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
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as exc:
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


def _truncated(message: str) -> ImageDecodeError:
    return ImageDecodeError(f"the image is truncated: {message}", code="image_truncated")


# PNG: Pillow fills the rows a short (but valid) zlib stream lacks with black, so the stream is
# inflated here first, counting bytes and keeping none, and must hold height x (1 + row bytes).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20


def _check_png_rows(data: bytes) -> None:
    header, stream = _png_header_and_stream(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    bits = depth * _PNG_CHANNELS.get(colour, 1)
    passes = [(0, 0, 1, 1)] if interlace == 0 else _ADAM7
    rows_and_bytes = []
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            rows_and_bytes.append((rows, 1 + (columns * bits + 7) // 8))
    needed = sum(rows * row_bytes for rows, row_bytes in rows_and_bytes)
    held = _inflated_size(stream, needed)
    if held < needed:
        whole_rows = held // rows_and_bytes[0][1] if interlace == 0 else None
        rows_held = f"{whole_rows} of {height} rows" if whole_rows is not None else "part of its interlaced passes"
        raise _truncated(
            f"the PNG declares {width} x {height} pixels but its image data holds {held} of the {needed} bytes "
            f"they need ({rows_held})"
        )


def _png_header_and_stream(data: bytes) -> tuple[bytes, list[bytes]]:
    header, stream, at = b"", [], 8
    while at + 8 <= len(data):
        (length,), kind = struct.unpack_from(">I", data, at), data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body[:13]
        elif kind == b"IDAT":
            stream.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if len(header) != 13:
        raise _truncated("the PNG has no complete IHDR header")
    return header, stream


def _inflated_size(stream: list[bytes], needed: int) -> int:
    """How many bytes the zlib stream inflates to, counting no further than `needed`."""
    inflate, held = zlib.decompressobj(), 0
    for piece in stream:
        pending = piece
        while pending and held < needed and not inflate.eof:
            held += len(inflate.decompress(pending, min(_INFLATE_STEP, needed - held)))
            pending = inflate.unconsumed_tail
        if held >= needed or inflate.eof:
            break
    return held


# TIFF: Pillow's own reader of uncompressed strips reads past a short strip's byte count and fills
# missing strips with black; libtiff (the compressed ones) refuses, but only after allocating.
_TIFF_UNCOMPRESSED = 1


def _check_tiff_strips(image: ImageFile.ImageFile, size: int) -> None:
    tags = getattr(image, "tag_v2", {})
    width, height = image.size
    planes = int(tags.get(277, 1)) if int(tags.get(284, 1)) == 2 else 1
    bits_per_sample = tags.get(258, (1,))
    bits = sum(int(b) for b in (bits_per_sample if isinstance(bits_per_sample, tuple) else (bits_per_sample,)))
    bits //= planes
    if 324 in tags:  # tiles
        tile_width, tile_length = int(tags.get(322, width)), int(tags.get(323, height))
        offsets, counts = tags.get(324, ()), tags.get(325, ())
        needed = -(-width // tile_width) * -(-height // tile_length) * planes
        block_bytes = [tile_length * ((tile_width * bits + 7) // 8)] * needed
        what = "tiles"
    else:
        rows_per_strip = min(int(tags.get(278, height)), height) or height
        offsets, counts = tags.get(273, ()), tags.get(279, ())
        per_plane = -(-height // rows_per_strip)
        needed = per_plane * planes
        row_bytes = (width * bits + 7) // 8
        block_bytes = [
            min(rows_per_strip, height - (i % per_plane) * rows_per_strip) * row_bytes for i in range(needed)
        ]
        what = "strips"
    offsets, counts = tuple(offsets), tuple(counts)
    if len(offsets) < needed or (counts and len(counts) < needed):
        raise _truncated(f"the TIFF declares {width} x {height} pixels in {needed} {what}, it lists {len(offsets)}")
    uncompressed = int(tags.get(259, _TIFF_UNCOMPRESSED)) == _TIFF_UNCOMPRESSED
    for index, (offset, count) in enumerate(zip(offsets, counts, strict=False)):
        if index >= needed:
            break
        if int(offset) + int(count) > size:
            raise _truncated(f"TIFF {what[:-1]} {index} ends at byte {offset + count}, the file has {size}")
        if uncompressed and int(count) < block_bytes[index]:
            raise _truncated(f"TIFF {what[:-1]} {index} holds {count} of the {block_bytes[index]} bytes it needs")


# JPEG: libjpeg decodes what a scan lacks as flat gray when a marker (an early EOI) ends it, and
# Pillow keeps its warnings to itself. Before decoding, each Huffman-coded scan must hold at least
# the bits its blocks need (two per block sequential, one per block in a DC scan), which refuses a
# header claiming 8000 x 8000 over 64 x 64 of data without decoding it, and a progressive file must
# bring every coefficient of every component to full precision. After decoding, the image is
# decoded again with junk (no 0xFF) spliced in before each marker that ends scan data: a complete
# scan never reads past its last block, so identical pixels mean no scan needed more than it had.
_JPEG_FORMATS = ("JPEG", "MPO")
_JPEG_PROBE = bytes(b % 255 for b in hashlib.shake_256(b"battery-ct jpeg probe").digest(256))
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_HUFFMAN_SOF = frozenset({0xC0, 0xC1, 0xC2})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


class _Scan(NamedTuple):
    components: tuple[int, ...]
    first: int  # Ss: the first coefficient
    last: int  # Se
    high: int  # Ah: the bit position refined (0: a first scan)
    low: int  # Al: the bit position reached
    data_bytes: int  # its entropy-coded data, stuffing and restart markers included


@dataclass
class _JpegLayout:
    sof: int | None = None
    width: int = 0
    height: int = 0
    sampling: dict[int, tuple[int, int]] = field(default_factory=dict)  # component id -> (H, V)
    scans: list[_Scan] = field(default_factory=list)
    scan_ends: list[int] = field(default_factory=list)  # where scan data stops: before a marker or at the end


def _check_jpeg_scans(layout: _JpegLayout) -> None:
    if layout.sof in _PROGRESSIVE_SOF:
        for component in layout.sampling:
            scans = [scan for scan in layout.scans if component in scan.components and scan.low == 0]
            final = {k for scan in scans for k in range(scan.first, scan.last + 1)}
            if missing := sorted(set(range(64)) - final):
                raise _truncated(
                    f"the progressive JPEG stops before its last scans: coefficients {missing[0]}..{missing[-1]} "
                    f"of component {component} never arrive at full precision"
                )
    elif layout.sof is not None and layout.sof != 0xC3:  # lossless JPEG scans have no coefficients
        missing_ids = [c for c in layout.sampling if not any(c in scan.components for scan in layout.scans)]
        if missing_ids:
            raise _truncated(f"the JPEG has no scan for component(s) {missing_ids}")
    if layout.sof in _HUFFMAN_SOF:
        for index, scan in enumerate(layout.scans):
            bits_per_block = 2 if layout.sof != 0xC2 else (1 if scan.first == 0 else 0)
            needed = _blocks(layout, scan) * bits_per_block
            if scan.data_bytes * 8 < needed:
                raise _truncated(
                    f"the JPEG declares {layout.width} x {layout.height} pixels but scan {index} holds "
                    f"{scan.data_bytes} bytes, fewer than the {-(-needed // 8)} its blocks need at the least"
                )


def _blocks(layout: _JpegLayout, scan: _Scan) -> int:
    h_max = max((h for h, _ in layout.sampling.values()), default=1)
    v_max = max((v for _, v in layout.sampling.values()), default=1)
    sampling = [layout.sampling.get(c, (1, 1)) for c in scan.components]
    if len(sampling) == 1:
        (h, v) = sampling[0]
        columns, rows = -(-layout.width * h // h_max), -(-layout.height * v // v_max)
        return -(-columns // 8) * -(-rows // 8)
    mcus = -(-layout.width // (8 * h_max)) * -(-layout.height // (8 * v_max))
    return mcus * sum(h * v for h, v in sampling)


def _check_jpeg_probe(data: bytes, layout: _JpegLayout, image: Image.Image) -> None:
    pieces, start = [], 0
    for end in layout.scan_ends:
        pieces += [data[start:end], _JPEG_PROBE]
        start = end
    probed = b"".join([*pieces, data[start:]])
    with Image.open(io.BytesIO(probed), formats=SUPPORTED_FORMATS) as again:
        again.load()
        if again.tobytes() != image.tobytes():
            width, height = image.size
            raise _truncated(
                f"the JPEG declares {width} x {height} pixels but its scan data ends before the last of them"
            )


def _jpeg_layout(data: bytes) -> _JpegLayout:
    layout, at = _JpegLayout(), 2
    while at + 1 < len(data):
        if data[at] != 0xFF:  # junk between segments: libjpeg skips to the next marker too
            at = data.find(b"\xff", at)
            if at < 0:
                break
            continue
        marker = data[at + 1]
        if marker == 0xD9:
            break
        if marker in _STANDALONE or marker in (0xD8, 0xFF):
            at += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2) if at + 4 <= len(data) else (0,)
        body = data[at + 4 : at + 2 + length]
        at += 2 + max(length, 2)
        if marker in _SOF_MARKERS and len(body) >= 6:
            layout.sof = marker
            layout.height, layout.width = struct.unpack_from(">HH", body, 1)
            for i in range(body[5]):
                if 8 + 3 * i < len(body):
                    layout.sampling[body[6 + 3 * i]] = (max(body[7 + 3 * i] >> 4, 1), max(body[7 + 3 * i] & 0x0F, 1))
        elif marker == 0xDA and body:
            count = body[0]
            ids = tuple(body[1 + 2 * i] for i in range(count) if 1 + 2 * i < len(body))
            scan_end = _end_of_scan_data(data, at, layout.scan_ends)
            if len(tail := body[1 + 2 * count : 4 + 2 * count]) == 3:
                layout.scans.append(_Scan(ids, tail[0], tail[1], tail[2] >> 4, tail[2] & 0x0F, scan_end - at))
            at = scan_end
    return layout


def _end_of_scan_data(data: bytes, at: int, scan_ends: list[int]) -> int:
    """Where the scan data from `at` ends (a marker other than stuffing); records that place and
    every restart marker's place in `scan_ends`."""
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            scan_ends.append(len(data))
            return len(data)
        follower = data[at + 1]
        if follower in (0x00, 0xFF):
            at += 2 if follower == 0x00 else 1
            continue
        scan_ends.append(at)
        if 0xD0 <= follower <= 0xD7:
            at += 2
            continue
        return at


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
