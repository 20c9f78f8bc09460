"""`battery-ct measure` on files (a slice, a multi-page TIFF volume, an unreadable file) and
`battery-ct recipes` against the real S3 endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile

from facade.cli import main
from producers.simulator.cell_end import CellEndSpec, render_cell_end
from schemas.settings import ENV_PREFIX, Settings

RECIPE = """
name: tiny-cell
pixel_mm: 0.04
tolerances:
  can.outer_diameter_mm: {nominal: 6.0, min: 5.9, max: 6.1}
  can.wall_min_mm: {min: 0.3}
"""


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    volume, _ = render_cell_end(CellEndSpec(slices=32, seed=5))
    path = tmp_path_factory.mktemp("scans") / "cell.tif"
    tifffile.imwrite(path, volume)
    return path


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_slice_and_a_volume_are_measured_and_judged_naming_the_failed_check(
    volume_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    one_slice = tmp_path / "slice.tif"
    tifffile.imwrite(one_slice, tifffile.imread(volume_file)[-1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    status = main(["measure", "--recipe-file", str(recipe), str(one_slice), str(volume_file), str(broken)])
    slice_line, volume_line, error_line = lines(capsys.readouterr().out)
    assert status == 1  # the broken file
    assert slice_line["kind"] == "slice" and volume_line["kind"] == "volume" and volume_line["shape"][0] == 32
    measurements = slice_line["measurements"]
    assert isinstance(measurements, dict)
    assert measurements["can.outer_diameter_mm"]["value"] == pytest.approx(6.0, abs=0.05)
    assert set(measurements) == {name for name in measurements if name.startswith("can.")}  # what the recipe checks
    for line in (slice_line, volume_line):  # the simulated wall is 0.2 mm: below the recipe's 0.3
        assert (line["conforms"], line["failed"]) == (False, ["can.wall_min_mm"])
    assert error_line["path"] == str(broken) and "error" in error_line


def test_without_a_pixel_size_values_are_in_pixels(volume_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", str(volume_file)]) == 0
    (line,) = lines(capsys.readouterr().out)
    measurements = line["measurements"]
    assert isinstance(measurements, dict) and line["pixel_mm"] is None
    assert measurements["can.outer_diameter_mm"]["unit"] == "px"
    assert measurements["can.outer_diameter_mm"]["value"] == pytest.approx(150, abs=1.5)
    assert measurements["overhang.sectors"]["unit"] == "count"


@pytest.mark.integration
def test_recipes_import_list_show_and_a_new_version_on_change(
    settings: Settings,
    volume_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("s3_endpoint", "s3_access_key", "bucket_models"):
        monkeypatch.setenv(ENV_PREFIX + name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv(ENV_PREFIX + "S3_SECRET_KEY", settings.s3_secret_key.get_secret_value())
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    assert main(["recipes", "list"]) == 0 and "no recipes" in capsys.readouterr().out
    assert main(["recipes", "import", str(path)]) == 0
    assert lines(capsys.readouterr().out) == [{"name": "tiny-cell", "version": 1, "new": True}]
    assert main(["recipes", "import", str(path)]) == 0
    assert lines(capsys.readouterr().out) == [{"name": "tiny-cell", "version": 1, "new": False}]
    path.write_text(RECIPE.replace("min: 0.3", "min: 0.15"))
    assert main(["recipes", "import", str(path)]) == 0
    assert lines(capsys.readouterr().out)[0]["version"] == 2
    assert main(["recipes", "list", "--json"]) == 0
    assert lines(capsys.readouterr().out) == [{"name": "tiny-cell", "versions": [1, 2], "newest": 2}]
    assert main(["recipes", "show", "tiny-cell", "--version", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tolerances"]["can.wall_min_mm"] == {"nominal": None, "min": 0.3, "max": None}
    assert main(["recipes", "show", "4680"]) == 1 and "not in the registry" in capsys.readouterr().err
    path.write_text("name: bad\ntolerances: {can.radius_mm: {max: 1}}")
    assert main(["recipes", "import", str(path)]) == 1 and "not a valid recipe" in capsys.readouterr().err
    assert main(["measure", "--recipe", "tiny-cell", str(volume_file)]) == 0  # the newest version, its pixel size
    (line,) = lines(capsys.readouterr().out)
    assert (line["recipe"], line["pixel_mm"], line["conforms"]) == ("tiny-cell", 0.04, True)
