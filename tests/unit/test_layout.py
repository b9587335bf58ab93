"""Every package folder is installed: pyproject's explicit [tool.setuptools] packages list
names each folder with an ``__init__.py`` under services/, shared/, tools/ and benchmarks/
(tools/ and benchmarks/ under their import names)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _import_name(folder: Path, package_dir: dict[str, str]) -> str:
    parts = folder.relative_to(REPO).parts
    for name, where in package_dir.items():
        if parts[0] == where:
            return ".".join((name, *parts[1:]))
    return ".".join(parts)


def package_folders() -> set[str]:
    package_dir = _setuptools().get("package-dir", {})
    return {
        _import_name(init.parent, package_dir)
        for top in ("services", "shared", "tools", "benchmarks")
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_folder_is_listed() -> None:
    listed = set(_setuptools()["packages"])
    assert package_folders() - listed == set()


def test_every_listed_package_is_a_folder() -> None:
    listed = set(_setuptools()["packages"])
    assert listed - package_folders() == set()


def test_tools_and_benchmarks_install_under_their_import_names() -> None:
    assert _setuptools()["package-dir"] == {"alert_timing": "tools", "alert_timing_benchmarks": "benchmarks"}
    assert "alert_timing.ops" in package_folders()


def test_no_module_imports_by_name_at_run_time(tmp_path: Path) -> None:
    """scripts/check_dynamic_imports.py (in `make check`): the four packages pass, and an
    ``importlib.import_module`` (what the CLI once used to reach the benchmarks) is caught."""
    script = [sys.executable, str(REPO / "scripts" / "check_dynamic_imports.py")]
    clean = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert (clean.returncode, clean.stdout) == (0, "")
    sneaky = tmp_path / "cli.py"
    sneaky.write_text("import importlib\nfrom importlib import resources\n\n\n"
                      "def load(name: str) -> object:\n    return importlib.import_module(name)\n\n\n"
                      "def other(name: str) -> object:\n    return __import__(name)\n")
    found = subprocess.run([*script, str(sneaky)], capture_output=True, text=True, timeout=60)
    assert found.returncode == 1
    assert [line.split(" (")[0].rsplit(":", 2)[1:] for line in found.stdout.splitlines()] == [
        ["1", " import importlib"], ["6", " import_module(...)"], ["10", " __import__(...)"]]
