"""Scan images as the services read them from S3, and heat maps as they write them back.

The inference consumer and /predict both use these, so that a scan gets the same model input (and
so the same score) and its heat map the same place, whether it comes by Kafka or by HTTP.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DecodeFn = Callable[[bytes, int], np.ndarray]  # (object bytes, model input size) -> (S, S) float32


def scan_decoder(*, max_pixels: int) -> DecodeFn:
    """Bytes of a scan object -> the model's input; raises `ImageDecodeError` for what is no usable image."""
    from model_core.imaging import decode_image, preprocess

    def decode(data: bytes, size: int) -> np.ndarray:
        return preprocess(decode_image(data, max_pixels=max_pixels), size)

    return decode


def heatmap_key(scan_id: str, model_version: str) -> str:
    """Where a verdict's heat map lives in the heat-map bucket (one per scan and model version)."""
    return f"{model_version}/{scan_id}.png"
