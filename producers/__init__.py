"""What puts scans in: the CT-machine simulator and the uploader that stores a scan and announces it."""
