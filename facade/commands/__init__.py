"""One module per `battery-ct` command group; each exposes `register(subparsers)`."""
