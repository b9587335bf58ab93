"""The report's percentiles read off value counts (``exact_quantiles``) are ``quantile_cont``'s,
to the 0.001 ms the files show: the same rows, the same throttled and clock-skewed records left
out, groups with a NULL key kept."""

from __future__ import annotations

import random

import duckdb
import pytest

from alert_timing import report


def _table(con: duckdb.DuckDBPyConnection, rows: list[tuple[str | None, str, int | None]]) -> None:
    con.execute("CREATE OR REPLACE TABLE ast (g VARCHAR, status VARCHAR, hub_to_csp_ms BIGINT)")
    con.executemany("INSERT INTO ast VALUES (?, ?, ?)", rows)


def _both(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str]]) -> tuple[list, list]:
    exprs = "".join(f"{expr} AS {name}, " for expr, name in keys)
    cont = con.execute(f"SELECT {exprs}{report.percentiles('hub_to_csp_ms')} AS q FROM ast "
                       f"{'GROUP BY 1' if keys else ''} ORDER BY ALL").fetchall()
    counted = con.execute(f"SELECT * FROM ({report.exact_quantiles('hub_to_csp_ms', keys)}) ORDER BY ALL").fetchall()
    # quantile_cont gives NULL where nothing is measured, the counted lists NULL elements (each shown empty)
    a = [(*r[:-1], [round(x, 3) for x in r[-1]]) for r in cont if r[-1] is not None]
    b = [(*r[:-1], [round(x, 3) for x in r[-1]]) for r in counted if r[-1] is not None and r[-1][0] is not None]
    return a, b


def test_hand_made_values_interpolate_between_ranks() -> None:
    con = duckdb.connect()
    # measured: 10, 20, 30, 40 (the throttled 1 and the skewed -5 left out); p50 at rank 1.5 -> 25
    _table(con, [(None, "complete", 10), (None, "complete", 40), (None, "throttled", 1), (None, "complete", 30),
                 (None, "complete", -5), (None, "no_handshake", None), (None, "complete", 20)])
    a, b = _both(con, [])
    assert b == a == [([25.0, 37.0, 38.5, 39.7],)]


@pytest.mark.parametrize("seed", range(12))
def test_same_figures_as_quantile_cont(seed: int) -> None:
    rng = random.Random(seed)  # fixed seeds: the same rows every run
    n = (1, 2, 3, 7, 50, 400, 3000)[seed % 7]
    rows = [(rng.choice(["a", "b", None]), rng.choice(["complete", "complete", "throttled", "no_handshake"]),
             rng.choice([None, -rng.randrange(1, 90), rng.randrange(0, 40), int(rng.lognormvariate(7, 2))]))
            for _ in range(n)]
    con = duckdb.connect()
    _table(con, rows)
    for keys in ([], [("g", "g")], [("coalesce(g, 'none')", "g")]):
        a, b = _both(con, keys)
        assert a == b
