"""Runnable examples of battery-ct on the local stack: `examples.demo` is behind `battery-ct demo`."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
