"""The retrain consumer: accepted scans in; dataset, checkpoints, promotion gate and model updates out."""
