"""Runnable examples of battery-ct on the local stack: `examples.demo` is behind `battery-ct demo`."""
