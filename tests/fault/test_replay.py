"""`alert-timing replay` after a live run rebuilds the same 15-minute reports, byte for byte:
the latest-revision ``ast_*_rN.json`` of every window in the new data directory equals the
live one (the event log is the source of truth; the metrics core is deterministic)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from alert_timing.nats_server import EmbeddedNats
from tests.harness.faults import REPO, Baseline, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _latest_json(data_dir: Path) -> dict[str, tuple[str, bytes]]:
    """window start -> (file name, bytes) of its latest-revision JSON report."""
    best: dict[str, tuple[int, Path]] = {}
    for path in (data_dir / "ast").rglob("ast_*_r*.json"):
        revision = int(path.stem.rsplit("_r", 1)[1])
        window = msgspec.json.decode(path.read_bytes())["window_start"]
        if window not in best or revision > best[window][0]:
            best[window] = (revision, path)
    return {w: (path.name, path.read_bytes()) for w, (_, path) in best.items()}


def test_replay_rebuilds_byte_identical_reports(tmp_path: Path, baseline: Baseline) -> None:
    outcome = baseline.outcome()
    live = _latest_json(baseline.data_dir)
    assert live and set(live) == set(outcome.latest_reports())
    # The live run's event log, served again: the run's server stopped with it; a nats-server of
    # this test's own serves a copy of its store (the shared run's files stay as it left them).
    shutil.copytree(baseline.store, tmp_path / "jetstream")
    target = tmp_path / "replayed"
    with EmbeddedNats(tmp_path / "jetstream") as server:
        done = subprocess.run(
            [sys.executable, "-m", "alert_timing.cli", "replay", "--nats-url", server.url, "--data-dir", str(target)],
            env=cli_env(server.url, tmp_path / "unused"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    replayed = _latest_json(target)
    assert set(replayed) == set(live)
    differ = [w for w in sorted(live) if replayed[w] != live[w]]
    assert not differ, (f"{len(differ)} windows differ, first {differ[0]}: "
                        f"{live[differ[0]][0]} vs {replayed[differ[0]][0]}")
