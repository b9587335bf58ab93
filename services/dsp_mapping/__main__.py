"""``python -m services.dsp_mapping [--nats-url URL]``: run this one service."""

import sys

from services.dsp_mapping.app import build
from services.runtime.entry import main
from shared import subjects as s

if __name__ == "__main__":
    sys.exit(main(s.DSP_MAPPING, build))
