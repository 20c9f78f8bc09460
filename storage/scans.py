"""Scan images as the services read them from S3, and heat maps as they write them back.

The inference consumer and /predict both use these, so that a scan gets the same model input (and
so the same score) and its heat map the same place, whether it comes by Kafka or by HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model_core.metrology.plan import MeasurePlan
    from schemas.measurements import Measurements

log = logging.getLogger(__name__)

DecodeFn = Callable[[bytes, int], np.ndarray]  # (object bytes, model input size) -> (S, S) float32


@dataclass(frozen=True)
class DecodedScan:
    """A scan's model input and, when a plan asked for them, its measurements (at the scan's own
    resolution, which the model input no longer has)."""

    image: np.ndarray
    measured: Measurements | None = None
    measure_s: float = 0.0
    measure_error: str | None = None


MeasuringDecodeFn = Callable[[bytes, int, "MeasurePlan | None"], DecodedScan]


def scan_decoder(*, max_pixels: int) -> DecodeFn:
    """Bytes of a scan object -> the model's input; raises `ImageDecodeError` for what is no usable image."""
    from model_core.imaging import decode_image, preprocess

    def decode(data: bytes, size: int) -> np.ndarray:
        return preprocess(decode_image(data, max_pixels=max_pixels), size)

    return decode


def measuring_decoder(*, max_pixels: int) -> MeasuringDecodeFn:
    """`scan_decoder` that also measures the decoded slice as `plan` says, in the same call (the
    slice is decoded once). A measurement that fails is a note in the result, never a lost scan."""
    from model_core.imaging import decode_image, preprocess
    from model_core.metrology.measure import measure_slice

    def decode(data: bytes, size: int, plan: MeasurePlan | None) -> DecodedScan:
        raw = decode_image(data, max_pixels=max_pixels)
        image = preprocess(raw, size)
        if plan is None or not plan.families:
            return DecodedScan(image)
        started = time.perf_counter()
        try:
            measured = measure_slice(raw, plan.pixel_mm, plan.families).measurements
        except Exception as exc:  # a measurement bug must not cost the scan its verdict
            log.exception("measuring a scan failed")
            return DecodedScan(image, None, time.perf_counter() - started, f"measuring failed: {exc}")
        return DecodedScan(image, measured, time.perf_counter() - started)

    return decode


def heatmap_key(scan_id: str, model_version: str) -> str:
    """Where a verdict's heat map lives in the heat-map bucket (one per scan and model version)."""
    return f"{model_version}/{scan_id}.png"
