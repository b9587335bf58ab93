"""Every command the docs give exists as written: each ``alert-timing ...``, ``python -m ...``
and ``scripts/...`` in a code block or code span of README.md and docs/*.md runs with
``--help``, and each ``make`` target is in the Makefile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
START = r"(?:^|(?<=[\s;&|(]))"
WORD = r"[a-z][a-z0-9_-]*"
ALERT_TIMING = re.compile(START + rf"alert-timing((?: {WORD})*)")
#: A module named in full (``services.<name>`` is a placeholder: the concrete names are given too).
PYTHON_M = re.compile(START + r"python3? -m ([A-Za-z_][A-Za-z0-9_.]*)(?![<A-Za-z0-9_.])")
SCRIPT = re.compile(START + r"(scripts/[A-Za-z0-9_.-]+)")
MAKE = re.compile(START + rf"make((?: {WORD})+)")


def code_of(text: str) -> list[str]:
    """The code of a Markdown text: fenced blocks (per line) and code spans outside them."""
    code: list[str] = []
    for block in FENCE.findall(text):
        code.extend(block.splitlines())
    code.extend(SPAN.findall(FENCE.sub("", text)))
    return code


def doc_commands() -> dict[tuple[str, ...], set[str]]:
    """Each command to check (argv to run with ``--help``, or ("make", target)) and where the
    docs give it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for doc in DOCS:
        where = str(doc.relative_to(ROOT))
        for line in code_of(doc.read_text()):
            for m in ALERT_TIMING.finditer(line):
                found.setdefault(("alert-timing", *m.group(1).split()), set()).add(where)
            for m in PYTHON_M.finditer(line):
                found.setdefault(("python", "-m", m.group(1)), set()).add(where)
            for m in SCRIPT.finditer(line):
                found.setdefault((m.group(1),), set()).add(where)
            for m in MAKE.finditer(line):
                for target in m.group(1).split():
                    found.setdefault(("make", target), set()).add(where)
    return found


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {name for line in text.splitlines() if (m := re.match(r"^([A-Za-z0-9_.-]+)\s*:", line))
            for name in [m.group(1)]}


def argv_of(command: tuple[str, ...]) -> list[str]:
    if command[0] == "alert-timing":
        found = shutil.which("alert-timing", path=str(Path(sys.executable).parent))
        assert found, "alert-timing is not installed next to this Python"
        return [found, *command[1:]]
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return [str(ROOT / command[0])]


def help_fails(command: tuple[str, ...]) -> str | None:
    """None when ``command --help`` exits 0, else what it said."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([*argv_of(command), "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode == 0 and proc.stdout.strip():
        return None
    said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return f"exit {proc.returncode}: {said[-1] if said else ''}"


def test_the_docs_give_commands() -> None:
    commands = doc_commands()
    kinds = {c[0] if c[0] in ("alert-timing", "python", "make") else "scripts" for c in commands}
    assert kinds == {"alert-timing", "python", "make", "scripts"}, kinds
    assert ("alert-timing", "trace") in commands


def test_every_command_in_the_docs_exists() -> None:
    commands = doc_commands()
    targets = make_targets()
    broken = [f"make {c[1]} ({', '.join(sorted(commands[c]))}): no such Makefile target"
              for c in commands if c[0] == "make" and c[1] not in targets]
    to_run = sorted(c for c in commands if c[0] != "make")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for command, failure in zip(to_run, pool.map(help_fails, to_run), strict=True):
            if failure is not None:
                broken.append(f"{' '.join(command)} ({', '.join(sorted(commands[command]))}): {failure}")
    if broken:
        pytest.fail("commands in the docs that do not run with --help:\n" + "\n".join(broken))
