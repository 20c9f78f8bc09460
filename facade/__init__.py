"""The HTTP facade (FastAPI) and the battery-ct command line."""
