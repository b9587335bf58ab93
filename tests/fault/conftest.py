"""The fault suite's fixtures; the harness itself is tests/harness/faults.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.faults import Harness, Outcome, run_case


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Outcome, Harness]]:
    """The undisturbed run of the seed, once per session (its server stays up for the replay)."""
    outcome, harness = run_case(tmp_path_factory.mktemp("baseline"), "baseline", keep_server=True)
    try:
        yield outcome, harness
    finally:
        harness.close()
