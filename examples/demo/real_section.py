"""The report's real-data section: a model trained on the repository's copies of real XCT slices
scores the nominal `im_1` and the buckled `im_2` (electrodes buckled near the centre)."""

from __future__ import annotations

from examples.demo.report import RealProbeFigure, RealSection, display_png
from model_core.heatmap import render_heatmap_png
from model_core.imaging import load_image_file, preprocess
from model_core.network import NetworkConfig
from model_core.scoring import PatchMemoryConfig
from model_core.spot_check import augmented_copies, spot_check
from model_core.training import TrainingConfig
from producers.real_samples import real_samples

MAX_PIXELS = 64 * 1024 * 1024
DESCRIPTIONS = {
    "im_1": "nominal cell (its augmented copies are in the training set)",
    "im_2": "cell with buckled electrodes near the centre (never seen)",
    "im_1_fresh_copy": "a new augmented copy of the nominal slice (never seen)",
}


def real_section(
    size: int, *, epochs: int, copies: int, seed: int = 0, network: NetworkConfig | None = None
) -> RealSection:
    samples = real_samples()

    normal = [preprocess(load_image_file(p, max_pixels=MAX_PIXELS), size) for p in samples.jelly_roll]
    im_1 = preprocess(load_image_file(samples.nominal, max_pixels=MAX_PIXELS), size)
    im_2 = preprocess(load_image_file(samples.buckled, max_pixels=MAX_PIXELS), size)
    probes = {"im_1": im_1, "im_2": im_2, "im_1_fresh_copy": augmented_copies(im_1, 1, seed + 1000)[0]}
    config = TrainingConfig(
        network=network or NetworkConfig(image_size=size),
        memory=PatchMemoryConfig.for_image_size(size),
        epochs=epochs,
        seed=seed,
    )
    check = spot_check(normal, im_1, probes, config, copies=copies)
    figures = [
        RealProbeFigure(
            name=name,
            description=DESCRIPTIONS[name],
            anomaly_score=probe.anomaly_score,
            is_anomaly=probe.is_anomaly,
            heatmap_png=render_heatmap_png(probe.image, probe.error_map),
            slice_png=display_png(probe.image),
        )
        for name, probe in check.probes.items()
    ]
    attribution = (
        "Real slices: 256 px copies of slices from MPJ-Imaging/battery_xct_workflows (MIT licence); see "
        f"{samples.attribution.name} and {samples.licence.name} in producers/data/real/."
    )
    return RealSection(
        threshold=check.threshold,
        threshold_rule=check.threshold_rule,
        training_slices=check.training_slices,
        training_seconds=check.training_seconds,
        probes=figures,
        attribution=attribution,
    )
