"""The HTTP facade (FastAPI) and the battery-ct command line."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
