"""A failed emit loses nothing and never stalls.

The metrics service applies a batch to its core, then writes the window files and publishes
the records and reports; only then are the inputs acked. Here the writing or the publishing
fails for a while mid-run: the data directory's file system is full, or JetStream stores no
``ast.record`` for a few seconds. Each case is held to ``check``: every record, every report
and every window file arrives exactly once, with the same figures as the undisturbed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import bus
from shared import subjects as s
from tests.harness.faults import Baseline, Harness, check, run_case, seeded

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: How long the failure lasts once it starts (several batches' worth at the run's rate).
FAILING_S = 6.0
TMPFS_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def small_file_system(where: Path) -> Iterator[Path]:
    """A tmpfs of ``TMPFS_BYTES`` mounted at ``where`` (root only, as in CI)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(where)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True, timeout=30)


def fill(where: Path) -> Path:
    """Fill the file system holding ``where`` to the last byte (unbuffered writes, halving the
    size on ENOSPC down to one byte); the filler's path."""
    filler = where / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        size = 1024 * 1024
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                size //= 2
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        (where / ".probe").write_bytes(b"x" * 4096)
    assert info.value.errno == errno.ENOSPC
    return filler


def test_window_files_on_a_full_disk(tmp_path: Path, baseline: Baseline) -> None:
    """The file system of the window files is full for ``FAILING_S`` while windows close."""
    rng = seeded("disk-full")
    ast = tmp_path / "data" / "ast"
    with small_file_system(ast):
        async def faults(h: Harness) -> None:
            await h.wait_for(s.STREAM_OUT, s.REPORT_15M, rng.randint(2, 6))  # windows are closing
            filler = await asyncio.to_thread(fill, ast)
            h.note("window files' file system full")
            await asyncio.sleep(FAILING_S)
            filler.unlink()
            h.note("space freed")

        outcome, _ = run_case(tmp_path, "disk-full", faults)
        log = (tmp_path / "data" / "logs" / f"{s.METRICS}-0.log").read_text(errors="replace")
    assert "No space left on device" in log, "the disk never filled while windows were written"
    check(outcome, baseline.outcome())


def test_records_not_stored_for_a_while(tmp_path: Path, baseline: Baseline) -> None:
    """JetStream stores no ``ast.record`` for ``FAILING_S`` (the subject taken off AST_OUT):
    every publish of a record fails meanwhile and is retried."""
    rng = seeded("record-publish")

    async def faults(h: Harness) -> None:
        await h.wait_for(s.STREAM_OUT, s.RECORD, rng.randint(200, 600))
        nc = await bus.connect(h.settings(), "fault-records")
        try:
            js = nc.jetstream(timeout=10)
            config = (await js.stream_info(s.STREAM_OUT)).config
            assert s.RECORD in (config.subjects or [])
            await js.update_stream(dataclasses.replace(config, subjects=[x for x in config.subjects or []
                                                                          if x != s.RECORD]))
            h.note("ast.record not stored")
            await asyncio.sleep(FAILING_S)
            await js.update_stream(config)
            h.note("ast.record stored again")
        finally:
            await nc.close()

    outcome, _ = run_case(tmp_path, "record-publish-fails", faults)
    log = (tmp_path / "data" / "logs" / f"{s.METRICS}-0.log").read_text(errors="replace")
    assert "outputs not stored yet" in log, "no record publish failed"
    check(outcome, baseline.outcome())
