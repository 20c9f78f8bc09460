"""What puts scans in: the CT-machine simulator and the uploader that stores a scan and announces it."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
