"""Targets of the operational metrics: the TOML file, its checks, and which target a slice gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events import LEGS
from shared.targets import CATEGORIES, REGIONS, LegTarget, TargetsError, load_targets, parse_targets

FULL = """
illustrative = false
[legs.hub_to_csp_ms]
owner = "CSP"
target_ms = 10_000
by_region = { north = 12_000 }

[legs.end_to_end_ms]
owner = "DCC"
target_ms = 60_000
by_region = { south = 70_000 }
by_category = { dcc_alert = 90_000 }
"""


def test_parse_keeps_leg_order_owners_and_overrides() -> None:
    targets = parse_targets(FULL, "ops.toml")
    assert targets.illustrative is False and targets.source == "ops.toml"
    assert targets.legs == (
        LegTarget("hub_to_csp_ms", "CSP", 10_000, {"north": 12_000}, {}),
        LegTarget("end_to_end_ms", "DCC", 60_000, {"south": 70_000}, {"dcc_alert": 90_000}),
    )


def test_category_wins_over_region_which_wins_over_the_default() -> None:
    end_to_end = parse_targets(FULL).legs[1]
    assert end_to_end.target_for("north", "device_alert") == 60_000
    assert end_to_end.target_for("south", "device_alert") == 70_000
    assert end_to_end.target_for("south", "dcc_alert") == 90_000
    assert end_to_end.target_for("north", "dcc_alert") == 90_000


def test_rows_cover_every_region_and_category_of_each_leg() -> None:
    rows = parse_targets(FULL).rows()
    assert len(rows) == 2 * len(REGIONS) * len(CATEGORIES)
    by_slice = {(leg, region, category): (owner, ms) for leg, owner, region, category, ms in rows}
    assert by_slice[("hub_to_csp_ms", "north", "dcc_alert")] == ("CSP", 12_000)
    assert by_slice[("hub_to_csp_ms", "central", "device_alert")] == ("CSP", 10_000)
    assert by_slice[("end_to_end_ms", "south", "device_alert")] == ("DCC", 70_000)


def test_packaged_defaults_are_illustrative_and_name_an_owner_for_every_leg() -> None:
    targets = load_targets()
    assert targets.illustrative is True
    assert [t.leg for t in targets.legs] == list(LEGS)
    owners = {t.leg: t.owner for t in targets.legs}
    assert owners == {"hub_to_csp_ms": "CSP", "csp_to_dsp_ms": "CSP", "dsp_to_su_ms": "DSP",
                      "su_handshake_ms": "Service User", "end_to_end_ms": "DCC"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("legs = [", "not valid TOML"),
        ("illustrative = true", "no \\[legs"),
        ("colour = 1\n[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1", "unknown key colour"),
        ("illustrative = 'yes'\n[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1", "true or false"),
        ("[legs.coffee_ms]\nowner='x'\ntarget_ms=1", "unknown leg coffee_ms"),
        ("[legs.end_to_end_ms]\ntarget_ms=1", "owner must be a non-empty string"),
        ("[legs.end_to_end_ms]\nowner=' '\ntarget_ms=1", "owner must be a non-empty string"),
        ("[legs.end_to_end_ms]\nowner='DCC'", "target_ms is missing"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=0", "positive whole number"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1.5", "positive whole number"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=true", "positive whole number"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1\nlimit=2", "unknown key limit"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1\nby_region={east=5}", "unknown east"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1\nby_category={dcc_alert=-5}", "positive whole number"),
        ("[legs.end_to_end_ms]\nowner='DCC'\ntarget_ms=1\nby_category=3", "must be a table"),
        ("legs = { end_to_end_ms = 5 }", "must be a table"),
    ],
)
def test_bad_files_say_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(TargetsError, match=match):
        parse_targets(text, "bad.toml")


def test_load_from_a_file_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(FULL, encoding="utf-8")
    assert load_targets(path).source == str(path)
    with pytest.raises(TargetsError, match="no such targets file"):
        load_targets(tmp_path / "absent.toml")
