"""Volumes read slice by slice: every format from local files and from the real S3 endpoint, their
voxel sizes from the metadata, and the damaged ones refused with their reason."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from schemas.settings import Settings
from storage import volumes
from storage.object_store import ObjectStore
from storage.volumes import VolumeError, VolumeLimits, open_object, open_path, slabs

SLICE_MM, PIXEL_MM = 0.05, 0.025


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 65535, size=(12, 20, 24), dtype=np.uint16)


def write_imagej(path: Path, cube: np.ndarray) -> None:
    tifffile.imwrite(
        path, cube, imagej=True, resolution=(1 / PIXEL_MM, 1 / PIXEL_MM), metadata={"spacing": SLICE_MM, "unit": "mm"}
    )


def write_ome(path: Path, cube: np.ndarray) -> None:
    metadata = {"axes": "ZYX", "PhysicalSizeX": PIXEL_MM * 1000, "PhysicalSizeY": PIXEL_MM * 1000}
    tifffile.imwrite(path, cube, ome=True, metadata=metadata | {"PhysicalSizeZ": SLICE_MM * 1000})


def write_bigtiff(path: Path, cube: np.ndarray) -> None:
    # compressed pages, no voxel size: the event or the command line gives it
    tifffile.imwrite(path, cube, bigtiff=True, compression="zlib")


def write_nrrd(path: Path, cube: np.ndarray, encoding: str = "raw") -> None:
    header = {"encoding": encoding, "spacings": [PIXEL_MM, PIXEL_MM, SLICE_MM], "space units": ["mm"] * 3}
    nrrd.write(str(path), np.ascontiguousarray(cube.transpose(2, 1, 0)), header, index_order="F")


def write_ome_zarr(path: Path, cube: np.ndarray) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("0", data=cube, chunks=(4, cube.shape[1], cube.shape[2]))
    axes: list[Any] = [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    scale: Any = {"type": "scale", "scale": [SLICE_MM, PIXEL_MM, PIXEL_MM]}
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [scale]}]}],
    }


def write_folder(path: Path, cube: np.ndarray) -> None:
    path.mkdir()
    for index, plane in enumerate(cube):
        Image.fromarray(plane).save(path / f"slice_{index + 1}.png")


WRITERS: dict[str, tuple[str, Callable[[Path, np.ndarray], None], bool]] = {
    "imagej-tiff": ("cell.tif", write_imagej, True),
    "ome-tiff": ("cell.ome.tif", write_ome, True),
    "bigtiff": ("cell.tif", write_bigtiff, False),
    "nrrd-raw": ("cell.nrrd", write_nrrd, True),
    "nrrd-gzip": ("cell.nrrd", lambda p, c: write_nrrd(p, c, "gzip"), True),
    "ome-zarr": ("cell.zarr", write_ome_zarr, True),
    "folder": ("cell", write_folder, False),
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_reads_back_slab_by_slab_with_its_voxel_size(kind: str, cube: np.ndarray, tmp_path: Path) -> None:
    name, write, has_voxel = WRITERS[kind]
    write(tmp_path / name, cube)
    volume = open_path(tmp_path / name)
    try:
        assert volume.info.shape == cube.shape
        parts = [slab for _, slab in slabs(volume, 5)]
        assert [len(p) for p in parts] == [5, 5, 2]
        np.testing.assert_array_equal(np.concatenate(parts).astype(np.uint16), cube)
        if has_voxel:
            assert volume.info.pixel_mm == pytest.approx(PIXEL_MM, rel=1e-6)
            assert volume.info.slice_mm == pytest.approx(SLICE_MM, rel=1e-6)
        else:
            assert volume.info.pixel_mm is None
    finally:
        volume.close()


def test_a_gzip_nrrd_read_out_of_order_starts_again_and_still_agrees(cube: np.ndarray, tmp_path: Path) -> None:
    write_nrrd(tmp_path / "c.nrrd", cube, "gzip")
    volume = open_path(tmp_path / "c.nrrd")
    np.testing.assert_array_equal(volume.read(8, 10), cube[8:10])
    np.testing.assert_array_equal(volume.read(1, 3), cube[1:3])


def test_a_truncated_tiff_is_refused_before_any_slice_is_scored(cube: np.ndarray, tmp_path: Path) -> None:
    write_imagej(tmp_path / "c.tif", cube)
    data = (tmp_path / "c.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeError) as caught:
        open_path(tmp_path / "cut.tif")
    assert caught.value.code == "volume_truncated"


def test_a_truncated_raw_nrrd_is_refused(cube: np.ndarray, tmp_path: Path) -> None:
    write_nrrd(tmp_path / "c.nrrd", cube)
    data = (tmp_path / "c.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[:-100])
    with pytest.raises(VolumeError) as caught:
        open_path(tmp_path / "cut.nrrd")
    assert caught.value.code == "volume_truncated"


def test_a_truncated_gzip_nrrd_fails_at_the_slab_it_lacks(cube: np.ndarray, tmp_path: Path) -> None:
    write_nrrd(tmp_path / "c.nrrd", cube, "gzip")
    data = (tmp_path / "c.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) - len(data) // 3])
    volume = open_path(tmp_path / "cut.nrrd")
    with pytest.raises(VolumeError) as caught:
        list(slabs(volume, 4))
    assert caught.value.code == "volume_truncated"


def test_a_folder_with_a_gap_in_its_numbering_names_the_missing_slice(cube: np.ndarray, tmp_path: Path) -> None:
    write_folder(tmp_path / "cell", cube)
    (tmp_path / "cell" / "slice_7.png").unlink()
    with pytest.raises(VolumeError, match="slice numbers 7 are missing") as caught:
        open_path(tmp_path / "cell")
    assert caught.value.code == "volume_missing_slice"


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (VolumeLimits(max_slices=11), "slices"),
        (VolumeLimits(max_voxels=5000), "voxels"),
        (VolumeLimits(max_bytes=9000), "bytes"),
    ],
)
def test_a_volume_over_a_cap_is_refused_from_its_header(
    limits: VolumeLimits, what: str, cube: np.ndarray, tmp_path: Path
) -> None:
    write_imagej(tmp_path / "c.tif", cube)
    with pytest.raises(VolumeError, match=what) as caught:
        open_path(tmp_path / "c.tif", limits)
    assert caught.value.code == "volume_too_large"


def test_not_a_volume_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "c.tif").write_bytes(b"II*\x00" + b"\x00" * 50)
    (tmp_path / "c.nrrd").write_bytes(b"NRRD0004\ntype: what\nsizes: 3 3\n\n")
    (tmp_path / "c.zarr").mkdir()
    for name in ("c.tif", "c.nrrd", "c.zarr"):
        with pytest.raises(VolumeError):
            open_path(tmp_path / name)


def test_a_zarr_with_another_axis_order_is_read_along_its_z(cube: np.ndarray, tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "yxz.zarr", mode="w", zarr_format=3)
    group.create_array("0", data=np.ascontiguousarray(cube.transpose(1, 2, 0)), chunks=(20, 24, 4))
    axes: list[Any] = [{"name": n, "type": "space", "unit": "millimeter"} for n in "yxz"]
    scale: Any = {"type": "scale", "scale": [PIXEL_MM, PIXEL_MM, SLICE_MM]}
    group.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [scale]}]}]
    volume = open_path(tmp_path / "yxz.zarr")
    assert volume.info.shape == cube.shape
    assert volume.info.slice_mm == pytest.approx(SLICE_MM)
    np.testing.assert_array_equal(volume.read(3, 7), cube[3:7])


# -- object storage: the real S3 endpoint ------------------------------------------------------------------


def _upload_tree(store: ObjectStore, bucket: str, root: Path, prefix: str) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            store.put_bytes(bucket, f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())


def test_from_s3_a_tiff_is_read_by_ranged_gets_not_whole(
    cube: np.ndarray, tmp_path: Path, settings: Settings, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumes, "_BLOCK", 4096)
    big = np.tile(cube, (4, 1, 1))  # 48 slices of ~1 kB each beyond the headers
    write_imagej(tmp_path / "c.tif", big)
    object_store.ensure_bucket(settings.bucket_scans)
    object_store.put_bytes(settings.bucket_scans, "line1/c.tif", (tmp_path / "c.tif").read_bytes())
    ranges: list[int] = []
    original = object_store.get_range

    def counted(bucket: str, key: str, offset: int, length: int) -> bytes:
        data = original(bucket, key, offset, length)
        ranges.append(len(data))
        return data

    monkeypatch.setattr(object_store, "get_range", counted)
    volume = open_object(object_store, settings.bucket_scans, "line1/c.tif")
    np.testing.assert_array_equal(volume.read(30, 32), big[30:32])
    assert 0 < sum(ranges) < (tmp_path / "c.tif").stat().st_size / 2
    volume.close()


def test_from_s3_an_ome_zarr_prefix_and_a_folder_prefix(
    cube: np.ndarray, tmp_path: Path, settings: Settings, object_store: ObjectStore
) -> None:
    object_store.ensure_bucket(settings.bucket_scans)
    write_ome_zarr(tmp_path / "c.zarr", cube)
    _upload_tree(object_store, settings.bucket_scans, tmp_path / "c.zarr", "line1/c.zarr")
    write_folder(tmp_path / "slices", cube)
    _upload_tree(object_store, settings.bucket_scans, tmp_path / "slices", "line1/c-slices")

    zarr_volume = open_object(object_store, settings.bucket_scans, "line1/c.zarr")
    assert zarr_volume.info.pixel_mm == pytest.approx(PIXEL_MM)
    np.testing.assert_array_equal(np.concatenate([s for _, s in slabs(zarr_volume, 5)]), cube)
    folder = open_object(object_store, settings.bucket_scans, "line1/c-slices/")
    np.testing.assert_array_equal(folder.read(0, 12).astype(np.uint16), cube)

    object_store.delete(settings.bucket_scans, "line1/c-slices/slice_4.png")
    with pytest.raises(VolumeError) as caught:
        open_object(object_store, settings.bucket_scans, "line1/c-slices/")
    assert caught.value.code == "volume_missing_slice"


def test_from_s3_a_missing_object_is_the_storage_error_it_is(settings: Settings, object_store: ObjectStore) -> None:
    from storage.errors import ObjectMissing

    object_store.ensure_bucket(settings.bucket_scans)
    with pytest.raises(ObjectMissing):
        open_object(object_store, settings.bucket_scans, "line1/none.tif")


def test_gzip_helper_is_plain_zlib_compatible() -> None:
    # pynrrd writes gzip members; the cursor reads them and plain zlib streams alike
    raw = bytes(range(256)) * 100
    cursor = volumes._GzipCursor(io.BytesIO(gzip.compress(raw)), 0)
    assert cursor.take(1000) == raw[:1000]
    cursor.skip(5000)
    assert cursor.take(10) == raw[6000:6010]
