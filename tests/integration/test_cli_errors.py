"""Every command of the real CLI (a subprocess), given an unreachable NATS, a bad argument value
or a missing file: one line on stderr naming the command and the problem, exit status 2, no
traceback, no reconnect loop (the subprocess must end by itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alert_timing.nats_server import free_port

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "alert_timing.cli"]
#: Nothing listens there (a port just found free): connections are refused at once.
NOWHERE = f"nats://127.0.0.1:{free_port()}"
MISSING = "/nonexistent/alert-timing/file"

# (command, arguments, the start of the one line after "alert-timing COMMAND: ")
UNREACHABLE = [
    ("up", ["--nats-url", NOWHERE, "--simulate", "--alerts", "10"], f"cannot reach NATS at {NOWHERE}: "),
    ("service", ["hub-capture", "--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
    ("bootstrap", ["--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
    ("simulate", ["--nats-url", NOWHERE, "--alerts", "10"], f"cannot reach NATS at {NOWHERE}: "),
    ("ingest", ["{file}", "--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
    ("replay", ["--nats-url", NOWHERE, "--data-dir", "{tmp}/replayed"], f"cannot reach NATS at {NOWHERE}: "),
    ("tail", ["--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
    ("trace", ["N0001", "--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
    ("status", ["--nats-url", NOWHERE], f"cannot reach NATS at {NOWHERE}: "),
]

BAD_VALUE = [
    ("up", ["--simulate", "--alerts", "-5"], "argument --alerts: must be at least 1, not -5"),
    ("up", ["--partitions", "0"], "--partitions must be at least 1"),
    ("service", ["no-such-service"], "argument name: invalid choice: 'no-such-service'"),
    ("bootstrap", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ("simulate", ["--alerts", "-5"], "argument --alerts: must be at least 1, not -5"),
    ("simulate", ["--rate", "-100"], "argument --rate: must be more than 0, not -100"),
    ("simulate", ["--malformed-share", "1.5"], "argument --malformed-share: must be a share"),
    ("simulate", ["--wait", "nan"], "argument --wait: 'nan' is not a finite number"),
    ("ingest", ["{file}", "--subject", "ast.record"], "argument --subject: invalid choice: 'ast.record'"),
    ("gbcs", ["encode", "00"], "argument COMMAND: invalid choice: 'encode'"),
    ("report", ["--data-dir", "{tmp}", "--month", "2023-13", "--out", "{tmp}/out"], "--month '2023-13' is not YYYY-MM"),
    ("replay", ["--data-dir", "{tmp}/replayed", "--from", "yesterday"], "'yesterday' is not an ISO 8601"),
    ("replay", ["--data-dir", "{tmp}/replayed", "--partitions", "0"], "--partitions must be at least 1"),
    ("bench", ["--alerts", "-5"], "--alerts must be at least 1"),
    ("tail", ["ast..record"], "'ast..record' is not a NATS subject pattern"),
    ("trace", [], "the following arguments are required: RESPONSE_ID"),
    ("status", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ("docs", ["--out", "/dev/null/asyncapi.json"], "cannot write /dev/null/asyncapi.json"),
    ("soak", ["--duration", "-1"], "--duration, --rate and --fault-every must be positive"),
]

MISSING_FILE = [
    ("ingest", [MISSING, "--nats-url", NOWHERE], f"no such file: {MISSING}"),
    ("report", ["--data-dir", MISSING, "--month", "2023-06", "--out", "{tmp}/out"],
     f"no such data directory: {MISSING}"),
    ("report", ["--data-dir", "{tmp}", "--month", "2023-06", "--out", "{tmp}/out", "--sat", MISSING],
     f"no such SAT file: {MISSING}"),
]


def case_id(value: object) -> str:
    """A test id that is the same in every process (the free port is not): pytest-xdist's workers
    must collect the same tests."""
    return str(value).replace(NOWHERE, "nats://NOWHERE")[:40]


def run_cli(command: str, argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    feed = tmp_path / "north.jsonl"
    feed.write_text('{"responseId": "X"}\n')
    args = [a.format(file=feed, tmp=tmp_path) for a in argv]
    proc = subprocess.run([*CLI, command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NATS_URL": NOWHERE, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line(command: str, code: int, err: str, expected: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"alert-timing {command}: {expected}"), lines[0]
    assert code == 2, (code, err)


@pytest.mark.parametrize(("command", "argv", "expected"), UNREACHABLE, ids=case_id)
def test_unreachable_nats(command: str, argv: list[str], expected: str, tmp_path: Path) -> None:
    code, _, err = run_cli(command, argv, tmp_path)
    assert_one_line(command, code, err, expected)


@pytest.mark.parametrize(("command", "argv", "expected"), BAD_VALUE, ids=case_id)
def test_bad_argument_value(command: str, argv: list[str], expected: str, tmp_path: Path) -> None:
    code, _, err = run_cli(command, argv, tmp_path)
    assert_one_line(command, code, err, expected)


@pytest.mark.parametrize(("command", "argv", "expected"), MISSING_FILE, ids=case_id)
def test_missing_file(command: str, argv: list[str], expected: str, tmp_path: Path) -> None:
    code, _, err = run_cli(command, argv, tmp_path)
    assert_one_line(command, code, err, expected)


def test_missing_credentials_file(tmp_path: Path) -> None:
    code, _, err = run_cli("status", ["--nats-url", NOWHERE], tmp_path, env={"NATS_CREDS": MISSING})
    assert_one_line("status", code, err, "")
    assert MISSING in err or "cannot reach NATS" in err, err


def test_every_command_is_covered() -> None:
    from alert_timing.cli import build_parser

    # the commands as `alert-timing --help` lists them, one per line under COMMAND
    listing = build_parser().format_help().split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    commands = {line.split()[0] for line in listing.splitlines() if line[:4] == "    " and line[4:5].strip()}
    assert "up" in commands and "soak" in commands, listing
    covered = {c for c, _, _ in UNREACHABLE + BAD_VALUE + MISSING_FILE}
    assert commands == covered, commands ^ covered


def test_fresh_refuses_a_directory_up_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = run_cli("up", ["--simulate", "--fresh", "--data-dir", str(mine)], tmp_path)
    assert_one_line("up", code, err, f"--fresh will not clear {mine}: `alert-timing up` did not make it")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_fresh_with_an_external_server_is_refused(tmp_path: Path) -> None:
    code, _, err = run_cli("up", ["--fresh", "--nats-url", NOWHERE], tmp_path)
    assert_one_line("up", code, err, "--fresh clears the embedded nats-server's store")
