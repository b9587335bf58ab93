"""``python -m services.csp_enrichment [--nats-url URL]``: run this one service."""

import sys

from services.csp_enrichment.app import build
from services.runtime.entry import main
from shared import subjects as s

if __name__ == "__main__":
    sys.exit(main(s.CSP_ENRICHMENT, build))
