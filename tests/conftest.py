"""How the suite spreads over workers (`make test` runs ``pytest -n auto --dist loadgroup``).

Every test starts its servers on free loopback ports with stores in its own temporary
directory, so tests on different workers never meet. What stays together on one worker:

- the tests of one module (its module-scoped fixtures, e.g. a server or a browser, start once);
- every module that uses the session's ``pipeline`` (tests/integration/conftest.py): one set of
  service processes, fed by these modules one after another, in the same order as without
  workers.

The fault cases (marked ``slow``) are independent runs, each with its own servers and service
processes, and go out one by one. They come first, heaviest part of the suite first, so the
workers end together; then the other server-backed modules; the pure tests last.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

PIPELINE = "pipeline"

# Hypothesis's per-example deadline and its too-slow check are timed assertions: on a loaded
# machine (the workers share two cores with the servers and services) they fail a correct test.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("slow"):
        return 0
    if item.get_closest_marker("integration") or item.get_closest_marker("browser") or "/unit/" not in item.nodeid:
        return 1
    return 2


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules_on_pipeline = {item.module.__name__ for item in items
                           if isinstance(item, pytest.Function) and PIPELINE in item.fixturenames}
    for item in items:
        if item.get_closest_marker("slow") or not isinstance(item, pytest.Function):
            continue
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group(PIPELINE if module in modules_on_pipeline else module))
    items.sort(key=_rank)  # stable: within a rank, the collection order
