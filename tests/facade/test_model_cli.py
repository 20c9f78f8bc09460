"""`battery-ct train | score | evaluate` round trip on 16-bit PNG slices in a temporary folder."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facade.cli import main
from producers.simulator import random_defect_slice, random_normal_slice

SIZE = 64
pytestmark = pytest.mark.slow


def write_png16(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.astype(np.uint16)).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Someone else's layout: normal/ and defect/<type>/ with 16-bit PNGs, masks alongside."""
    root = tmp_path_factory.mktemp("slices")
    rng = np.random.default_rng(0)
    for i in range(10):
        write_png16(root / "normal" / f"batch{i % 2}" / f"n{i}.png", random_normal_slice(rng, SIZE)[0])
    for defect_type in ("pore", "inclusion"):
        for i in range(2):
            image, mask = random_defect_slice(rng, SIZE, defect_type, "high")
            write_png16(root / "defect" / defect_type / f"{defect_type}{i}.png", image)
            (root / "masks" / defect_type).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / "masks" / defect_type / f"{defect_type}{i}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ckpt") / "model"
    # capsys is function-scoped: capture the module-scoped training run by redirecting.
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", "--data", str(dataset), "--out", str(out), "--epochs", "2", "--image-size", str(SIZE)])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue() + stderr.getvalue()


def test_train_prints_progress_and_where_the_checkpoint_went(checkpoint: tuple[Path, str]) -> None:
    out, text = checkpoint
    assert "epoch 1/2" in text and "epoch 2/2" in text and "val loss" in text and "time left" in text
    assert f"checkpoint written to {out}" in text
    assert (out / "metadata.json").is_file()


def test_score_prints_one_json_line_per_image(
    checkpoint: tuple[Path, str], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = checkpoint
    code = main(
        ["score", "--checkpoint", str(out), str(dataset / "defect"), str(dataset / "normal" / "batch0" / "n0.png")]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5
    keys = {"path", "reconstruction_error", "anomaly_score", "is_anomaly", "threshold", "model_version"}
    assert all(keys <= set(line) for line in lines)
    assert sum(line["is_anomaly"] for line in lines[:4]) >= 3  # high-severity pores and inclusions


def test_score_reports_an_unreadable_file_and_fails(
    checkpoint: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["score", "--checkpoint", str(checkpoint[0]), str(bad)]) == 1
    line = json.loads(capsys.readouterr().out)
    assert line["path"] == str(bad) and line["error"]


def test_evaluate_reports_auroc_per_type_and_pixel_auroc(
    checkpoint: tuple[Path, str], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint[0]), "--data", str(dataset)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normal"] == 10 and report["defect"] == 4
    assert set(report["per_type"]) == {"pore", "inclusion"}
    assert 0.0 <= report["image_auroc"] <= 1.0
    assert report["masks"] == 4 and report["pixel_auroc"] is not None
    assert {"precision", "recall", "f1", "mean_error_auroc"} <= set(report)


def test_train_refuses_a_folder_without_normal_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "ck")]) == 2
    assert "no image files" in capsys.readouterr().err


def test_score_judges_a_volume_as_one_cell_with_its_findings(
    checkpoint: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    rng = np.random.default_rng(5)
    normal = [random_normal_slice(rng, SIZE)[0] for _ in range(8)]
    defective = [random_defect_slice(rng, SIZE, "pore", "high")[0] for _ in range(3)]
    for name, planes in (("normal", normal), ("defect", normal[:3] + defective + normal[3:6])):
        tifffile.imwrite(
            tmp_path / f"{name}.tif",
            np.stack(planes).astype(np.uint16),
            imagej=True,
            resolution=(10.0, 10.0),
            metadata={"spacing": 0.2, "unit": "mm"},
        )
    assert (
        main(["score", "--checkpoint", str(checkpoint[0]), str(tmp_path / "normal.tif"), str(tmp_path / "defect.tif")])
        == 0
    )
    normal_cell, defect_cell = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert normal_cell["kind"] == defect_cell["kind"] == "cell"
    assert (normal_cell["slices"], defect_cell["slices"]) == (8, 9)
    assert len(defect_cell["profile"]) == 9 and defect_cell["slice_mm"] == pytest.approx(0.2)
    assert any(cell["findings"] for cell in (normal_cell, defect_cell))  # the checks below run
    for cell in (normal_cell, defect_cell):
        # the cell's score is its strongest confirmed slice evidence, judged against the threshold
        assert cell["anomaly_score"] == pytest.approx(max(cell["profile"]), abs=1e-4)
        assert cell["is_anomaly"] == (cell["anomaly_score"] > cell["threshold"])
        for finding in cell["findings"]:
            assert 0 <= finding["z_first"] <= finding["strongest_slice"] <= finding["z_last"] < cell["slices"]
            centroid, centroid_mm = finding["extent"]["centroid"], finding["extent"]["centroid_mm"]
            assert centroid_mm == pytest.approx([centroid[0] * 0.2, centroid[1] * 0.1, centroid[2] * 0.1], abs=1e-3)
            assert finding["peak_score"] > cell["threshold"]
    # a tiny model's quality is not this test's business: the volume benchmark measures it


def test_score_reports_a_truncated_volume_and_fails(
    checkpoint: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    rng = np.random.default_rng(6)
    tifffile.imwrite(
        tmp_path / "c.tif", np.stack([random_normal_slice(rng, SIZE)[0] for _ in range(4)]).astype(np.uint16)
    )
    data = (tmp_path / "c.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) * 2 // 3])
    assert main(["score", "--checkpoint", str(checkpoint[0]), "--volume", str(tmp_path / "cut.tif")]) == 1
    line = json.loads(capsys.readouterr().out)
    assert "truncated" in line["error"]
