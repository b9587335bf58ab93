"""Opt-in: decode the DCC's published RTDS 4.5.0 GBCS test messages, when present.

The messages are read from ``../shared/gbcs/rtds-4.5.0`` beside the repository
(published test data, not ours: never copied in). Skipped when absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alert_timing.gbcs_cli import decode_items
from shared.gbcs import GbcsError, decode_item

REPO_ROOT = Path(__file__).resolve().parents[2]
RTDS = REPO_ROOT.parent / "shared" / "gbcs" / "rtds-4.5.0"
FILES = sorted(RTDS.glob("*/*.HEX")) if RTDS.is_dir() else []
ALERT_CODE_IN_NAME = re.compile(r"_([0-9A-F]{4})_")

pytestmark = pytest.mark.skipif(not FILES, reason=f"RTDS test messages not found at {RTDS}")


def test_both_kinds_present() -> None:
    kinds = {path.parent.name for path in FILES}
    assert kinds == {"alerts", "responses"}


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_vector_decodes(path: Path) -> None:
    try:
        decoded = decode_item(path.read_text())
    except GbcsError as exc:  # pragma: no cover - a failure message worth reading
        pytest.fail(f"{path.name}: {exc}")
    if path.parent.name == "responses":
        assert decoded.cra_flag == "response"
        assert (decoded.alert_code, decoded.alert_time) == (None, None)
    else:
        assert decoded.cra_flag == "alert"
        assert decoded.alert_code is not None
        named = ALERT_CODE_IN_NAME.search(path.name)
        if named:
            assert decoded.alert_code == named.group(1)


def test_cli_reports_no_error_for_any_vector() -> None:
    results = decode_items([str(path) for path in FILES])
    assert [(Path(item).name, error) for item, _, error in results if error is not None] == []
