"""Reusable test harnesses: real nats-server helpers, frames, the fault-suite runner, metrics events."""
