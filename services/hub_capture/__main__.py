"""``python -m services.hub_capture [--nats-url URL]``: run this one service."""

import sys

from services.hub_capture.app import build
from services.runtime.entry import main
from shared import subjects as s

if __name__ == "__main__":
    sys.exit(main(s.HUB_CAPTURE, build))
