#!/usr/bin/env python3
"""No module of the four packages imports by name at run time (``importlib.import_module``,
``__import__``, ``importlib.util`` loaders, ``runpy``): import-linter sees only ``import``
statements, so a dynamic import could cross the layers (tools -> services -> shared) unseen.
``importlib.resources`` and ``importlib.metadata`` read data and are fine.

    python scripts/check_dynamic_imports.py [PATH ...]   (default: the four packages)

Prints one line per dynamic import found (``path:line: what``) and exits 1 if there is any."""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("services", "shared", "tools", "benchmarks")

#: Modules whose import is a dynamic import, and names that import dynamically when called.
DYNAMIC_MODULES = {"importlib", "importlib.util", "importlib.machinery", "runpy", "imp", "pkgutil", "zipimport"}
DYNAMIC_CALLS = {"__import__", "import_module", "reload", "spec_from_file_location", "module_from_spec",
                 "run_module", "run_path", "load_module", "exec_module"}


def findings(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in DYNAMIC_MODULES:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module in DYNAMIC_MODULES:
            for alias in node.names:
                if alias.name not in ("resources", "metadata"):
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in DYNAMIC_CALLS:
                yield node.lineno, f"{name}(...)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/check_dynamic_imports.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the four packages)")
    roots = parser.parse_args(argv).paths or [ROOT / p for p in PACKAGES]
    files = sorted(f for r in roots for f in ([r] if r.is_file() else r.rglob("*.py")))
    found = [f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}:{line}: {what} (a dynamic import: "
             "import-linter cannot check its layer)" for f in files for line, what in findings(f)]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
