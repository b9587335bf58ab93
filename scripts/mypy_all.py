#!/usr/bin/env python3
"""mypy over the four packages in one run, each named as a package (mypy takes packages or
files, not both): services and shared as themselves, tools/ and benchmarks/ under the names
they install as (``alert_timing``, ``alert_timing_benchmarks``, from pyproject.toml's
package-dir), through a folder of links that mypy can follow (it cannot follow the editable
install's import hook). Arguments are passed on to mypy."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKS = ROOT / ".mypy_cache" / "installed-names"


def main(argv: list[str]) -> int:
    package_dir: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    LINKS.mkdir(parents=True, exist_ok=True)
    for name, folder in package_dir.items():
        link = LINKS / name
        if not (link.is_symlink() and link.resolve() == (ROOT / folder).resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(ROOT / folder, target_is_directory=True)
    packages = [arg for name in package_dir for arg in ("-p", name)]
    env = {**os.environ, "MYPYPATH": str(LINKS)}
    packages = ["-p", "services", "-p", "shared", *packages]
    return subprocess.call([sys.executable, "-m", "mypy", *packages, *argv], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
