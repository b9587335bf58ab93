"""Snapshots by time only: a storm of events does not bring the next snapshot forward."""

from __future__ import annotations

import time

from services.metrics.app import SnapshotPolicy, _Partition
from services.metrics.core import MetricsCore


def test_a_snapshot_is_due_by_time_whatever_was_applied() -> None:
    part = _Partition(0, MetricsCore())
    policy = SnapshotPolicy(60.0)
    part.last_snapshot = time.monotonic()
    assert not policy.due(part)
    part.last_snapshot = time.monotonic() - 61.0
    assert policy.due(part)


def test_no_snapshot_when_the_interval_is_zero() -> None:
    part = _Partition(0, MetricsCore())
    part.last_snapshot = time.monotonic() - 10**6
    assert not SnapshotPolicy(0.0).due(part)
