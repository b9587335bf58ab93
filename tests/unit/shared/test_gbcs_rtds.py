"""Opt-in: decode the DCC's published RTDS 4.5.0 GBCS test messages, when present.

The messages are read from ``../shared/gbcs/rtds-4.5.0`` (alerts and responses)
and ``../shared/gbcs/rtds-4.5.0-commands`` (signed commands and unsigned
pre-commands) beside the repository, or beside a folder above it (a git
worktree) — published test data, not ours: never copied in. Each set is
skipped when absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alert_timing.gbcs_cli import decode_items
from shared.gbcs import GbcsError, decode_item

REPO_ROOT = Path(__file__).resolve().parents[3]


def _samples() -> Path:
    """``shared/gbcs`` in the nearest folder above the repository that has one."""
    for folder in REPO_ROOT.parents:
        candidate = folder / "shared" / "gbcs"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "gbcs"


RTDS = _samples() / "rtds-4.5.0"
RTDS_COMMANDS = _samples() / "rtds-4.5.0-commands"
FILES = sorted(RTDS.glob("*/*.HEX")) if RTDS.is_dir() else []
COMMAND_FILES = sorted(RTDS_COMMANDS.glob("*.HEX")) if RTDS_COMMANDS.is_dir() else []
ALERT_CODE_IN_NAME = re.compile(r"_([0-9A-F]{4})_")

needs_files = pytest.mark.skipif(not FILES, reason=f"RTDS test messages not found at {RTDS}")
needs_commands = pytest.mark.skipif(not COMMAND_FILES, reason=f"RTDS commands not found at {RTDS_COMMANDS}")


@needs_files
def test_both_kinds_present() -> None:
    kinds = {path.parent.name for path in FILES}
    assert kinds == {"alerts", "responses"}


@needs_files
@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_vector_decodes(path: Path) -> None:
    try:
        decoded = decode_item(path.read_text())
    except GbcsError as exc:  # pragma: no cover - a failure message worth reading
        pytest.fail(f"{path.name}: {exc}")
    assert not decoded.pre_command
    if path.parent.name == "responses":
        assert decoded.cra_flag == "response"
        assert (decoded.alert_code, decoded.alert_time) == (None, None)
    else:
        assert decoded.cra_flag == "alert"
        assert decoded.alert_code is not None
        named = ALERT_CODE_IN_NAME.search(path.name)
        if named:
            assert decoded.alert_code == named.group(1)


@needs_commands
def test_commands_and_pre_commands_present() -> None:
    kinds = {"PRECOMMAND" if "_PRECOMMAND_" in path.name else "COMMAND" for path in COMMAND_FILES}
    assert kinds == {"COMMAND", "PRECOMMAND"}


@needs_commands
@pytest.mark.parametrize("path", COMMAND_FILES, ids=[path.name for path in COMMAND_FILES])
def test_command_decodes(path: Path) -> None:
    try:
        decoded = decode_item(path.read_text())
    except GbcsError as exc:  # pragma: no cover - a failure message worth reading
        pytest.fail(f"{path.name}: {exc}")
    assert decoded.cra_flag == "command"
    assert (decoded.alert_code, decoded.alert_time) == (None, None)
    # File names say which is which: a pre-command has no MAC header and no signature length.
    is_pre_command = "_PRECOMMAND_" in path.name
    assert decoded.pre_command is is_pre_command
    if is_pre_command:
        assert not decoded.mac_header


@pytest.mark.skipif(not (FILES or COMMAND_FILES), reason="no RTDS test messages found")
def test_cli_reports_no_error_for_any_vector() -> None:
    results = decode_items([str(path) for path in [*FILES, *COMMAND_FILES]])
    assert len(results) == len(FILES) + len(COMMAND_FILES)
    assert [(Path(item).name, error) for item, _, error in results if error is not None] == []
