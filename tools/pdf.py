"""The dashboard as a PDF for the operations group, printed by real headless Chromium.

Chromium is Debian's ``chromium`` package (``make chromium`` installs it). It runs with a
throw-away profile, no network services of its own, and a virtual-time budget so the plotly
charts finish drawing before the page is printed. The PDF's title is the page's ``<title>``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["CHROMIUM_FLAGS", "PdfError", "chromium_command", "find_chromium", "print_pdf"]

CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
    "--virtual-time-budget=15000",
)
DEFAULT_CHROMIUM: Final = "/usr/bin/chromium"
TIMEOUT_S: Final = 300.0


class PdfError(Exception):
    """Chromium is missing or did not print; the message says which."""


def find_chromium() -> str | None:
    """Chromium's path: ``chromium`` on PATH, else /usr/bin/chromium, else None."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return DEFAULT_CHROMIUM if Path(DEFAULT_CHROMIUM).exists() else None


def chromium_command(binary: str, profile: Path, page: Path, pdf: Path) -> list[str]:
    """The command line that prints ``page`` (an HTML file) to ``pdf``."""
    return [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf}",
            Path(page).resolve().as_uri()]


def print_pdf(page: Path, pdf: Path, chromium: str | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """Print the HTML file ``page`` to ``pdf`` (written whole or not at all); return ``pdf``."""
    binary = chromium or find_chromium()
    if binary is None:
        raise PdfError(f"--pdf needs Chromium, not found on PATH or at {DEFAULT_CHROMIUM} "
                       "(`make chromium` installs Debian's package)")
    pdf = Path(pdf)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    partial = pdf.with_name(f".{pdf.name}.tmp")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="alert-timing-chromium-") as profile:
        try:
            done = subprocess.run(chromium_command(binary, Path(profile), Path(page), partial),
                                  capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise PdfError(f"Chromium did not print {page} within {timeout_s:.0f} s") from None
        except OSError as exc:
            raise PdfError(f"cannot run Chromium ({binary}): {exc.strerror or exc}") from None
    if done.returncode != 0 or not partial.is_file() or partial.read_bytes()[:5] != b"%PDF-":
        partial.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PdfError(f"Chromium could not print {page} to PDF (exit {done.returncode}): {last}")
    partial.replace(pdf)
    return pdf
