"""The fault suite's fixtures; the harness itself is tests/harness/faults.py."""

from __future__ import annotations

import os

import pytest

from tests.harness.faults import Baseline


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # every worker's temporary directory is a child of this run's own one
        return Baseline(tmp_path_factory.getbasetemp().parent)
    return Baseline(tmp_path_factory.mktemp("baseline-shared"))
