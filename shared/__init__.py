"""The common library: events, subjects, time formats, GBCS, bus set-up, telemetry."""
