"""The dataset writer and `battery-ct synth`: the folder layout, labels.csv, bytes per seed, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facade.cli import main
from model_core.imaging import load_image_file
from producers.simulator import DEFECT_TYPES, DatasetError, generate_dataset, plan_dataset, planned_slice, render_slice

SIZE = 64


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> list[dict[str, str]]:
    with (root / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_dataset_matches_its_labels_file(tmp_path: Path) -> None:
    generate_dataset(tmp_path, normal=3, defect=10, seed=4, size=SIZE, progress=False)
    rows = _labels(tmp_path)
    assert [r["label"] for r in rows] == ["normal"] * 3 + ["defect"] * 10
    assert {r["defect_type"] for r in rows if r["label"] == "defect"} == set(DEFECT_TYPES)
    listed = {r["path"] for r in rows} | {r["mask_path"] for r in rows if r["mask_path"]}
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")}
    assert listed == written
    for row in rows:
        image = Image.open(tmp_path / row["path"])
        assert image.mode == "I;16" and image.size == (SIZE, SIZE)
        if row["label"] == "normal":
            assert row["path"].startswith("normal/") and row["mask_path"] == "" and row["severity"] == ""
            continue
        assert row["path"] == f"defect/{row['defect_type']}/{Path(row['path']).name}"
        assert row["mask_path"] == f"masks/{row['defect_type']}/{Path(row['path']).name}"
        assert row["severity"] in {"low", "medium", "high"}
        mask = np.asarray(Image.open(tmp_path / row["mask_path"]))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert int((mask > 0).sum()) == int(row["mask_pixels"])


def test_a_written_slice_decodes_to_the_rendered_pixels(tmp_path: Path) -> None:
    generate_dataset(tmp_path, normal=1, defect=1, seed=9, size=SIZE, progress=False)
    item = planned_slice(9, 0, size=SIZE, defect=True)
    image, mask = render_slice(item.spec)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / item.path)), image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / str(item.mask_path))), mask)
    # the project's own decoder reads it as 16-bit data (no 8-bit truncation)
    decoded = load_image_file(tmp_path / item.path, max_pixels=10**6)
    np.testing.assert_array_equal(decoded, image.astype(np.float32))


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_dataset(tmp_path / name, normal=2, defect=3, seed=5, size=SIZE, progress=False)
    generate_dataset(tmp_path / "c", normal=2, defect=3, seed=6, size=SIZE, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a")["normal/normal_000000.png"] != _files(tmp_path / "c")["normal/normal_000000.png"]


def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "one", normal=2, defect=2, seed=8, size=SIZE, progress=False)
    generate_dataset(tmp_path / "two", normal=2, defect=2, seed=8, size=SIZE, progress=False, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    with pytest.raises(DatasetError, match="workers"):
        generate_dataset(tmp_path / "none", normal=1, defect=0, seed=8, size=SIZE, progress=False, workers=0)


def test_one_slice_can_be_made_alone_and_does_not_depend_on_the_counts() -> None:
    small = plan_dataset(2, 5, seed=1, size=SIZE)
    large = plan_dataset(7, 9, seed=1, size=SIZE)
    assert small[1] == large[1] == planned_slice(1, 1, size=SIZE)
    assert small[2 + 4] == large[7 + 4] == planned_slice(1, 4, size=SIZE, defect=True)


def test_an_existing_dataset_is_kept_unless_overwritten(tmp_path: Path) -> None:
    generate_dataset(tmp_path, normal=3, defect=0, seed=1, size=SIZE, progress=False)
    with pytest.raises(DatasetError, match="already holds a dataset"):
        generate_dataset(tmp_path, normal=1, defect=0, seed=1, size=SIZE, progress=False)
    generate_dataset(tmp_path, normal=1, defect=0, seed=1, size=SIZE, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "normal").iterdir()) == ["normal_000000.png"]  # no stale slices


def test_synth_round_trip_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    argv = ["synth", "--out", str(out), "--normal", "2", "--defect", "3", "--seed", "1", "--size", str(SIZE)]
    assert main([*argv, "--types", "pore,crack", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["normal"] == 2 and summary["defect"] == 3
    rows = _labels(out)
    assert [r["defect_type"] for r in rows if r["label"] == "defect"] == ["pore", "crack", "pore"]
    assert all((out / r["path"]).is_file() for r in rows)


def test_synth_help_explains_the_layout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "labels.csv" in text and "--normal" in text and "electrode_gap" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--normal", "-1"], "must be 0 or more"),
        (["--normal", "two"], "not a whole number"),
        (["--normal", "1", "--size", "8"], "between 32 and 4096"),
        (["--normal", "1", "--types", "pore,rust"], "unknown defect type(s) rust"),
        ([], "nothing to write"),
        (["--normal", "1", "--workers", "0"], "must be 1 or more"),
    ],
)
def test_synth_bad_arguments_give_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path / "data"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_synth_refuses_to_overwrite_without_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "--out", str(tmp_path), "--normal", "1", "--size", str(SIZE), "--quiet"]
    assert main(argv) == 0
    with pytest.raises(SystemExit):
        main(argv)
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
