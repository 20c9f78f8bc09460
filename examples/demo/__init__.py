"""`battery-ct demo`: the main job end to end on the local infrastructure, with a live view and a report."""
