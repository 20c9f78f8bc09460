"""The detector that serves now, swapped between batches when a new model is promoted."""

from __future__ import annotations

import threading

from model_core.detector import Detector


class ModelHolder:
    """Thread-safe holder of the current `Detector`.

    Readers take `current` once per batch and keep using that object, so a `swap` never changes
    the model in the middle of a batch.
    """

    def __init__(self, detector: Detector | None = None) -> None:
        self._lock = threading.Lock()
        self._detector = detector

    @property
    def current(self) -> Detector | None:
        with self._lock:
            return self._detector

    def require(self) -> Detector:
        """The current detector, or `LookupError` when none is loaded yet."""
        detector = self.current
        if detector is None:
            raise LookupError("no model is loaded yet")
        return detector

    def swap(self, detector: Detector) -> Detector | None:
        """Serve `detector` from now on; returns the one it replaces."""
        with self._lock:
            previous, self._detector = self._detector, detector
        return previous
