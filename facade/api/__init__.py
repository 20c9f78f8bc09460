"""The HTTP facade: /predict, /retrain, /anomaly and the operations endpoints (FastAPI).

`create_app(settings)` builds the application; `server.run(settings, host, port)` serves it.
"""

from __future__ import annotations

from facade.api.app import create_app

__all__ = ["create_app"]
