"""hub-capture service: ast.in.csp-* -> ast.captured (+ ast.rejected.hub-capture)."""

from __future__ import annotations

from services.hub_capture.core import capture
from services.runtime import Binding, Emitter, Inbound, Service
from shared import subjects as s
from shared.events import RejectedInput
from shared.settings import Settings


def build(settings: Settings) -> Service:
    def handle(batch: list[Inbound], out: Emitter) -> None:
        for msg in batch:
            event = capture(msg, settings)
            if isinstance(event, RejectedInput):
                out.rejected(event)
            else:
                out.event(s.CAPTURED, event)

    return Service(
        s.HUB_CAPTURE, settings, [Binding(s.STREAM_IN, "hub-capture", s.IN_CSP_NORTH, handle)]
    )
