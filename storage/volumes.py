"""CT volumes, read slice by slice from a local path or from object storage.

Formats: multi-page TIFF (BigTIFF, OME-TIFF and ImageJ stacks too; tifffile), NRRD with an attached
header, raw or gzip (pynrrd reads the header), Zarr v3 and OME-Zarr (zarr), and a folder (an S3
prefix) of per-slice images. A volume is never read whole: `Volume.read(start, stop)` returns the
slices `start..stop-1` as a (n, y, x) array, and a TIFF or raw NRRD in S3 is read by ranged GETs.

z is the cell axis. The voxel size comes from the file (TIFF resolution, ImageJ spacing, OME
physical sizes, NRRD spacings, OME-Zarr scales) where it has one. Every failure is a
`VolumeError` with a stable code (a dead letter's reason); the limits are checked from the
header, before any pixel is read.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, cast
from xml.etree import ElementTree

import numpy as np

if TYPE_CHECKING:
    from storage.object_store import ObjectStore

VolumeFormat = Literal["tiff", "nrrd", "zarr", "folder"]
VolumeErrorCode = Literal[
    "volume_unreadable", "volume_truncated", "volume_missing_slice", "volume_too_large", "volume_unsupported"
]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")
NRRD_SUFFIXES = (".nrrd",)
ZARR_SUFFIX = ".zarr"
_SLICE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_BLOCK = 1 << 20  # bytes per ranged GET: a TIFF's scattered page headers cost one request per block
_CACHED_BLOCKS = 16
_UNITS_MM = {"mm": 1.0, "millimeter": 1.0, "cm": 10.0, "centimeter": 10.0, "m": 1000.0, "meter": 1000.0}
_UNITS_MM |= dict.fromkeys(("um", "µm", "\\u00B5m", "micron", "micrometer"), 1e-3)
_UNITS_MM |= {"nm": 1e-6, "nanometer": 1e-6}


class VolumeError(ValueError):
    """The volume cannot be judged as it is: the same bytes fail again (dead-letter it)."""

    def __init__(self, message: str, *, code: VolumeErrorCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VolumeLimits:
    """The largest volume accepted (settings `VOLUME_MAX_*`): larger ones are refused from their
    header, so their timeouts can be sized for the largest allowed."""

    max_slices: int = 2048
    max_voxels: int = 2048 * 2048 * 2048
    max_bytes: int = 8 << 30


@dataclass(frozen=True)
class VolumeInfo:
    format: VolumeFormat
    shape: tuple[int, int, int]  # (z, y, x), z along the cell axis
    dtype: str
    slice_mm: float | None = None
    pixel_mm: float | None = None

    @property
    def slices(self) -> int:
        return self.shape[0]


class Volume(Protocol):
    info: VolumeInfo

    def read(self, start: int, stop: int) -> np.ndarray:
        """Slices `start..stop-1` as a (n, y, x) array in the file's dtype."""
        ...

    def close(self) -> None: ...


def slabs(volume: Volume, slices: int) -> Iterator[tuple[int, np.ndarray]]:
    """The volume in order, `slices` at a time: (index of the first, the slab)."""
    for start in range(0, volume.info.slices, slices):
        yield start, volume.read(start, min(start + slices, volume.info.slices))


def check_limits(info: VolumeInfo, limits: VolumeLimits) -> None:
    z, y, x = info.shape
    voxels = z * y * x
    size = voxels * np.dtype(info.dtype).itemsize
    if z > limits.max_slices:
        raise VolumeError(f"{z} slices, more than the {limits.max_slices} accepted", code="volume_too_large")
    if voxels > limits.max_voxels:
        raise VolumeError(f"{voxels} voxels, more than the {limits.max_voxels} accepted", code="volume_too_large")
    if size > limits.max_bytes:
        raise VolumeError(f"{size} bytes of voxels, more than the {limits.max_bytes} accepted", code="volume_too_large")


def volume_format(name: str) -> VolumeFormat | None:
    """The format a path or key names by its suffix (a trailing / or none: a folder of slices)."""
    lower = name.lower().rstrip("/")
    if lower.endswith(ZARR_SUFFIX) or lower.endswith(ZARR_SUFFIX + "/zarr.json"):
        return "zarr"
    if lower.endswith(TIFF_SUFFIXES):
        return "tiff"
    if lower.endswith(NRRD_SUFFIXES):
        return "nrrd"
    if name.endswith("/") or not Path(lower).suffix:
        return "folder"
    return None


# -- opening -----------------------------------------------------------------------------------------


def open_path(path: Path, limits: VolumeLimits | None = None, *, max_pixels: int = 1 << 26) -> Volume:
    """The volume at a local path: a TIFF or NRRD file, a `.zarr` directory or a folder of slices."""
    path = Path(path)
    kind = "zarr" if path.suffix.lower() == ZARR_SUFFIX else "folder" if path.is_dir() else volume_format(path.name)
    if kind == "zarr":
        import zarr.storage

        volume: Volume = _ZarrVolume(zarr.storage.LocalStore(path, read_only=True), str(path))
    elif kind == "folder":
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in _SLICE_SUFFIXES), key=_natural)
        volume = _FolderVolume([p.name for p in files], lambda name: (path / name).read_bytes(), str(path), max_pixels)
    elif kind == "tiff":
        volume = _TiffVolume(path.open("rb"), str(path))
    elif kind == "nrrd":
        volume = _NrrdVolume(path.open("rb"), str(path))
    else:
        raise VolumeError(
            f"{path}: not a volume format we read (TIFF, NRRD, Zarr, a folder)", code="volume_unsupported"
        )
    return _limited(volume, limits)


def open_object(
    store: ObjectStore, bucket: str, key: str, limits: VolumeLimits | None = None, *, max_pixels: int = 1 << 26
) -> Volume:
    """The volume at `s3://bucket/key`: a TIFF or NRRD object (read by ranged GETs), a `.zarr`
    prefix or a prefix of slice images (a key ending in /)."""
    kind = volume_format(key)
    where = f"s3://{bucket}/{key}"
    if kind == "zarr":
        from storage.zarr_store import ObjectStoreZarr

        prefix = key.removesuffix("/zarr.json").rstrip("/")
        volume: Volume = _ZarrVolume(ObjectStoreZarr(store, bucket, prefix), where)
    elif kind == "folder":
        prefix = key.rstrip("/") + "/"
        names = sorted(
            (k.removeprefix(prefix) for k in store.list_keys(bucket, prefix) if k.lower().endswith(_SLICE_SUFFIXES)),
            key=_natural,
        )
        names = [n for n in names if "/" not in n]
        cap = limits.max_bytes if limits else 1 << 30

        def fetch(name: str) -> bytes:
            return store.get_bytes(bucket, prefix + name, max_bytes=cap)

        volume = _FolderVolume(names, fetch, where, max_pixels)
    elif kind in ("tiff", "nrrd"):
        handle = cast(BinaryIO, RangedObject(store, bucket, key))
        volume = _TiffVolume(handle, where) if kind == "tiff" else _NrrdVolume(handle, where)
    else:
        raise VolumeError(
            f"{where}: not a volume format we read (TIFF, NRRD, Zarr, a folder)", code="volume_unsupported"
        )
    return _limited(volume, limits)


def _limited(volume: Volume, limits: VolumeLimits | None) -> Volume:
    if limits is not None:
        try:
            check_limits(volume.info, limits)
        except VolumeError:
            volume.close()
            raise
    return volume


class RangedObject(io.RawIOBase):
    """An S3 object as a seekable read-only file, fetched in blocks by ranged GETs as it is read."""

    def __init__(self, store: ObjectStore, bucket: str, key: str) -> None:
        super().__init__()
        self._store, self._bucket, self._key = store, bucket, key
        self._size = store.size(bucket, key)
        self._position = 0
        self._blocks: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(0, self._size - self._position))
        done = 0
        while done < wanted:
            index, within = divmod(self._position, _BLOCK)
            block = self._block(index)
            count = min(wanted - done, len(block) - within)
            if count <= 0:
                break
            view[done : done + count] = block[within : within + count]
            done += count
            self._position += count
        return done

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            if len(self._blocks) >= _CACHED_BLOCKS:
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[index] = self._store.get_range(self._bucket, self._key, index * _BLOCK, _BLOCK)
        return self._blocks[index]

    @property
    def size(self) -> int:
        return self._size


def _natural(path: Path | str) -> list[Any]:
    """Name order with numbers compared as numbers (slice_2 before slice_10)."""
    name = path.name if isinstance(path, Path) else path
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _length_mm(value: float | None, unit: str | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    factor = _UNITS_MM.get((unit or "mm").strip().lower())
    return value * factor if factor is not None else None


# -- TIFF --------------------------------------------------------------------------------------------


class _TiffVolume:
    """A multi-page TIFF: each page (of its first series) an axial slice."""

    def __init__(self, handle: BinaryIO, where: str) -> None:
        import tifffile

        self._handle, self._where = handle, where
        try:
            self._tiff = tifffile.TiffFile(handle)
            series = self._tiff.series[0]
            shape, axes = tuple(int(n) for n in series.shape), str(series.axes)
        except Exception as exc:  # tifffile raises many types for a damaged file
            handle.close()
            raise VolumeError(f"{where}: not a readable TIFF ({exc})", code="volume_unreadable") from exc
        kept = [(n, a) for n, a in zip(shape, axes, strict=True) if n > 1 or a in "YX"]
        if len(kept) == 2:
            kept.insert(0, (1, "Z"))
        if len(kept) != 3 or "".join(a for _, a in kept[1:]) != "YX":
            self.close()
            raise VolumeError(
                f"{where}: a TIFF of axes {axes} {shape} is no stack of gray slices", code="volume_unsupported"
            )
        self._series = series
        dims = (kept[0][0], kept[1][0], kept[2][0])
        self.info = VolumeInfo("tiff", dims, str(series.dtype), *self._voxel())
        self._check_complete()

    def _voxel(self) -> tuple[float | None, float | None]:
        tiff, page = self._tiff, self._tiff.pages.first
        if tiff.is_ome and tiff.ome_metadata:
            return _ome_tiff_voxel(tiff.ome_metadata)
        meta = tiff.imagej_metadata or {}
        unit = str(meta.get("unit", "")) or None
        pixel = None
        resolution = page.tags.get("XResolution")
        if resolution is not None:
            numerator, denominator = resolution.value
            per_unit = numerator / denominator if denominator else 0.0
            resolution_unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
            if per_unit > 0:
                if unit is not None:
                    pixel = _length_mm(1 / per_unit, unit)
                elif resolution_unit == 3:  # pixels per centimetre
                    pixel = 10 / per_unit
                elif resolution_unit == 2 and per_unit != 72:  # per inch; 72 is a writer's default, not a scan's
                    pixel = 25.4 / per_unit
        spacing = meta.get("spacing")
        slice_mm = _length_mm(float(spacing), unit) if spacing is not None else None
        return slice_mm, pixel

    def _check_complete(self) -> None:
        """A truncated file is found now, not halfway through the cell."""
        end = self._handle.seek(0, io.SEEK_END)
        offset = self._series.dataoffset
        if offset is not None:
            needed = offset + math.prod(self.info.shape) * np.dtype(self.info.dtype).itemsize
        else:
            needed = max(
                (
                    o + c
                    for page in self._series.pages
                    if page is not None
                    for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)
                ),
                default=0,
            )
        expected, cut = self._declared_slices(), self._chain_cut(end)
        if needed > end or cut or (expected is not None and expected > self.info.slices):
            self.close()
            promised = f" of the {expected} it declares" if expected else ""
            raise VolumeError(
                f"{self._where}: truncated at {end} bytes: {self.info.slices} slices readable{promised}",
                code="volume_truncated",
            )

    def _declared_slices(self) -> int | None:
        """The slice count an ImageJ or OME header promises (tifffile reads what is left)."""
        meta = self._tiff.imagej_metadata or {}
        if "images" in meta:
            return int(meta["images"])
        if self._tiff.is_ome and self._tiff.ome_metadata:
            match = re.search(r'SizeZ="(\d+)"', self._tiff.ome_metadata)
            return int(match.group(1)) if match else None
        return None

    def _chain_cut(self, end: int) -> bool:
        """Whether the last page read points to a next page beyond the file's end (the rest cut off)."""
        tiff = self._tiff.tiff
        last = self._tiff.pages[len(self._tiff.pages) - 1]
        offset = getattr(last, "offset", None)
        if offset is None:
            return False
        self._handle.seek(offset)
        count_bytes = self._handle.read(tiff.tagnosize)
        if len(count_bytes) < tiff.tagnosize:
            return True
        count = int.from_bytes(count_bytes, "little" if tiff.byteorder == "<" else "big")
        self._handle.seek(offset + tiff.tagnosize + count * tiff.tagsize)
        pointer = self._handle.read(tiff.offsetsize)
        if len(pointer) < tiff.offsetsize:
            return True
        return int.from_bytes(pointer, "little" if tiff.byteorder == "<" else "big") >= end

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            data = self._series.asarray(key=slice(start, stop)) if self.info.slices > 1 else self._series.asarray()
        except Exception as exc:
            raise VolumeError(
                f"{self._where}: slices {start}-{stop - 1} unreadable ({exc})", code="volume_unreadable"
            ) from exc
        return np.asarray(data).reshape(-1, *self.info.shape[1:])

    def close(self) -> None:
        self._tiff.close() if hasattr(self, "_tiff") else None
        self._handle.close()


def _ome_tiff_voxel(xml: str) -> tuple[float | None, float | None]:
    """(slice, pixel) in mm from OME-XML's first image's Pixels element."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, None
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return None, None

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        return _length_mm(float(value), pixels.get(f"PhysicalSize{axis}Unit", "µm")) if value else None

    return size("Z"), size("X")


# -- NRRD --------------------------------------------------------------------------------------------

_NRRD_TYPES = {
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
    "ushort": "u2", "unsigned short": "u2", "uint16": "u2", "uint16_t": "u2", "unsigned short int": "u2",
    "short": "i2", "int16": "i2", "int16_t": "i2", "signed short": "i2", "short int": "i2",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "int": "i4", "int32": "i4", "int32_t": "i4", "signed int": "i4",
    "float": "f4", "double": "f8",
}  # fmt: skip


class _NrrdVolume:
    """An NRRD file with its header attached; 3-D, x fastest, z (the cell axis) slowest."""

    def __init__(self, handle: BinaryIO, where: str) -> None:
        import nrrd

        self._handle, self._where = handle, where
        try:
            header = nrrd.read_header(_HeaderLines(handle))
        except Exception as exc:
            handle.close()
            raise VolumeError(f"{where}: not a readable NRRD header ({exc})", code="volume_unreadable") from exc
        self._offset = handle.tell()
        sizes = [int(n) for n in header.get("sizes", [])]
        kind = _NRRD_TYPES.get(str(header.get("type", "")).lower())
        encoding = str(header.get("encoding", "raw")).lower()
        if len(sizes) != 3 or kind is None or "data file" in header or "datafile" in header:
            self.close()
            raise VolumeError(
                f"{where}: NRRD of sizes {sizes}, type {header.get('type')!r}: "
                "we read 3-D gray volumes with the header attached",
                code="volume_unsupported",
            )
        if encoding not in ("raw", "gzip", "gz"):
            self.close()
            raise VolumeError(f"{where}: NRRD encoding {encoding!r}: we read raw and gzip", code="volume_unsupported")
        dtype = np.dtype(kind).newbyteorder("<" if header.get("endian", "little") == "little" else ">")
        self._dtype, self._gzip = dtype, encoding != "raw"
        spacings = _nrrd_spacings(header)
        unit = (header.get("space units") or ["mm"])[0]
        self.info = VolumeInfo(
            "nrrd", (sizes[2], sizes[1], sizes[0]), dtype.newbyteorder("=").str,
            _length_mm(spacings[2], unit), _length_mm(spacings[0], unit),
        )  # fmt: skip
        self._plane = sizes[0] * sizes[1] * dtype.itemsize
        self._stream: _GzipCursor | None = None
        if not self._gzip:
            end = handle.seek(0, io.SEEK_END)
            needed = self._offset + self._plane * sizes[2]
            if needed > end:
                self.close()
                raise VolumeError(
                    f"{where}: truncated: its voxels need {needed} bytes, the file has {end}", code="volume_truncated"
                )

    def read(self, start: int, stop: int) -> np.ndarray:
        count = stop - start
        if self._gzip:
            if self._stream is None or self._stream.position > start * self._plane:
                self._stream = _GzipCursor(self._handle, self._offset)
            self._stream.skip(start * self._plane - self._stream.position)
            data = self._stream.take(count * self._plane)
        else:
            self._handle.seek(self._offset + start * self._plane)
            data = self._handle.read(count * self._plane)
        if len(data) < count * self._plane:
            raise VolumeError(
                f"{self._where}: truncated at slice {start + len(data) // self._plane}", code="volume_truncated"
            )
        array = np.frombuffer(data, dtype=self._dtype).reshape(count, *self.info.shape[1:])
        return array.astype(self._dtype.newbyteorder("="), copy=False)

    def close(self) -> None:
        self._handle.close()


class _HeaderLines:
    """The lines of an NRRD header from a binary file, leaving it at the first data byte."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def __iter__(self) -> Iterator[str]:
        for _ in range(4096):
            line = self._handle.readline(65536)
            if not line:
                return
            text = line.decode("ascii", errors="replace").rstrip("\r\n")
            if not text:
                return
            yield text
        raise ValueError("a header of more than 4096 lines")


def _nrrd_spacings(header: dict[str, Any]) -> list[float | None]:
    if "spacings" in header:
        return [float(v) if np.isfinite(v) else None for v in header["spacings"]]
    directions = header.get("space directions")
    if directions is not None:
        return [
            float(np.linalg.norm(v)) if np.all(np.isfinite(v)) else None for v in np.asarray(directions, dtype=float)
        ]
    return [None, None, None]


class _GzipCursor:
    """A forward-only position in a gzip stream: slabs are read in order, so the stream is
    decompressed once, a slab at a time, never whole."""

    def __init__(self, handle: BinaryIO, offset: int) -> None:
        self._handle = handle
        self._handle.seek(offset)
        self._inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
        self._pending = b""
        self.position = 0

    def take(self, count: int) -> bytes:
        parts, have = [self._pending], len(self._pending)
        while have < count and not self._inflate.eof:
            compressed = self._handle.read(_BLOCK)
            if not compressed:
                break
            chunk = self._inflate.decompress(compressed, count - have + _BLOCK)
            parts.append(chunk)
            have += len(chunk)
            while self._inflate.unconsumed_tail and have < count:
                chunk = self._inflate.decompress(self._inflate.unconsumed_tail, count - have + _BLOCK)
                parts.append(chunk)
                have += len(chunk)
        data = b"".join(parts)
        self._pending = data[count:]
        self.position += min(count, len(data))
        return data[:count]

    def skip(self, count: int) -> None:
        while count > 0:
            count -= len(self.take(min(count, 64 * _BLOCK))) or count


# -- Zarr --------------------------------------------------------------------------------------------


class _ZarrVolume:
    """A Zarr v3 array, or the first (full-resolution) array of an OME-Zarr image group."""

    def __init__(self, store: Any, where: str) -> None:
        import zarr

        self._where = where
        try:
            node = zarr.open(store=store, mode="r")
        except Exception as exc:
            raise VolumeError(f"{where}: not a readable Zarr ({exc})", code="volume_unreadable") from exc
        scale: Sequence[float | None] = (None, None, None)
        names: list[str] = []
        units: list[str | None] = []
        array: Any
        attrs: dict[str, Any] = dict(node.attrs)
        if isinstance(node, zarr.Group):
            multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
            if not multiscales:
                raise VolumeError(f"{where}: a Zarr group without OME multiscales", code="volume_unsupported")
            first = multiscales[0]
            dataset = first["datasets"][0]
            array = node[dataset["path"]]
            axes = first.get("axes", [])
            names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
            units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
            scale = _ome_scale(dataset, first, len(array.shape))
        else:
            array = node
            spacing = attrs.get("voxel_mm") or attrs.get("spacing")
            if isinstance(spacing, list) and len(spacing) == len(array.shape):
                scale = [float(v) for v in spacing]
        self._array = array
        shape = tuple(int(n) for n in array.shape)
        if len(shape) != 3:
            squeeze = [i for i, n in enumerate(shape) if n > 1]
            if len(squeeze) != 3:
                raise VolumeError(f"{where}: a Zarr array of shape {shape} is no 3-D volume", code="volume_unsupported")
        self._order = _zyx_order(names, shape)
        z, y, x = (shape[i] for i in self._order)
        unit = {n: u for n, u in zip(names, units, strict=False)}
        slice_mm = _length_mm(scale[self._order[0]], unit.get("z")) if scale[self._order[0]] else None
        pixel_mm = _length_mm(scale[self._order[2]], unit.get("x")) if scale[self._order[2]] else None
        self.info = VolumeInfo("zarr", (z, y, x), str(array.dtype), slice_mm, pixel_mm)

    def read(self, start: int, stop: int) -> np.ndarray:
        selection: list[Any] = [0] * len(self._array.shape)
        for axis in self._order:
            selection[axis] = slice(None)
        selection[self._order[0]] = slice(start, stop)
        try:
            data = np.asarray(self._array[tuple(selection)])
        except Exception as exc:
            raise VolumeError(
                f"{self._where}: slices {start}-{stop - 1} unreadable ({exc})", code="volume_truncated"
            ) from exc
        kept = [axis for axis in range(len(self._array.shape)) if axis in self._order]
        return np.transpose(data, [kept.index(axis) for axis in self._order])

    def close(self) -> None:
        pass


def _ome_scale(dataset: dict[str, Any], multiscale: dict[str, Any], ndim: int) -> list[float | None]:
    scale: list[float | None] = [1.0] * ndim
    found = False
    for transforms in (dataset.get("coordinateTransformations", []), multiscale.get("coordinateTransformations", [])):
        for transform in transforms:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
                scale = [float(a) * float(b) for a, b in zip(scale, transform["scale"], strict=True)]  # type: ignore[arg-type]
                found = True
    return scale if found else [None] * ndim


def _zyx_order(names: list[str], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The array's axes that are z, y and x: by their OME names, else the last three of size > 1."""
    lowered = [n.lower() for n in names]
    if all(a in lowered for a in "zyx"):
        return lowered.index("z"), lowered.index("y"), lowered.index("x")
    spatial = [i for i, n in enumerate(shape) if n > 1][-3:] if len(shape) > 3 else [0, 1, 2]
    return spatial[0], spatial[1], spatial[2]


# -- a folder of slices ------------------------------------------------------------------------------


class _FolderVolume:
    """Per-slice image files in name order (numbers as numbers); a gap in their numbering is a
    missing slice, found before any is decoded."""

    def __init__(self, names: list[str], fetch: Callable[[str], bytes], where: str, max_pixels: int) -> None:
        from model_core.imaging import decode_image

        if not names:
            raise VolumeError(f"{where}: no slice images in the folder", code="volume_unreadable")
        found = [_trailing_number(n) for n in names]
        numbers = [n for n in found if n is not None]
        if len(numbers) == len(names):
            missing = sorted(set(range(min(numbers), max(numbers) + 1)) - set(numbers))
            if missing:
                shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise VolumeError(f"{where}: slice numbers {shown} are missing", code="volume_missing_slice")
        self._names, self._fetch, self._where, self._max_pixels = names, fetch, where, max_pixels
        self._decode = decode_image
        first = self._slice(0)
        height, width = first.shape
        self.info = VolumeInfo("folder", (len(names), height, width), str(first.dtype))
        self._first: np.ndarray | None = first

    def _slice(self, index: int) -> np.ndarray:
        from model_core.errors import ImageDecodeError

        name = self._names[index]
        try:
            return self._decode(self._fetch(name), max_pixels=self._max_pixels)
        except ImageDecodeError as exc:
            raise VolumeError(f"{self._where}: slice {name}: {exc}", code="volume_unreadable") from exc

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        for index in range(start, stop):
            image = self._first if index == 0 and self._first is not None else self._slice(index)
            if image.shape != self.info.shape[1:]:
                raise VolumeError(
                    f"{self._where}: slice {self._names[index]} is {image.shape}, the first {self.info.shape[1:]}",
                    code="volume_unreadable",
                )
            out.append(image)
        self._first = None
        return np.stack(out)

    def close(self) -> None:
        pass


def _trailing_number(name: str) -> int | None:
    match = re.search(r"(\d+)\D*$", name)
    return int(match.group(1)) if match else None


def with_voxel(info: VolumeInfo, slice_mm: float | None, pixel_mm: float | None) -> VolumeInfo:
    """`info` with the voxel size the file lacks filled in (from the event or the command line)."""
    return replace(info, slice_mm=info.slice_mm or slice_mm, pixel_mm=info.pixel_mm or pixel_mm)
