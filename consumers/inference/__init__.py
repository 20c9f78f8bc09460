"""The inference consumer: scans in, one Verdict per scan out (see docs/INFERENCE.md)."""
