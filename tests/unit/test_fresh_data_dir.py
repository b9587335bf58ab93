"""`up --fresh`: which data directories it clears, and which it refuses to touch."""

from __future__ import annotations

from pathlib import Path

import pytest

from alert_timing.supervisor import MARKER, clear_data_dir


def filled(root: Path, *names: str) -> Path:
    root.mkdir()
    for name in names:
        if "." in name:
            (root / name).write_text("x")
        else:
            (root / name / "inner").mkdir(parents=True)
            (root / name / "inner" / "file").write_text("x")
    return root


def test_a_new_or_empty_directory_is_left_as_it_is(tmp_path: Path) -> None:
    assert clear_data_dir(tmp_path / "new") == f"fresh run: {tmp_path / 'new'} is new"
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert clear_data_dir(tmp_path / "empty") == f"fresh run: {tmp_path / 'empty'} is empty"


def test_a_directory_up_made_is_emptied_whatever_it_holds(tmp_path: Path) -> None:
    demo = filled(tmp_path / "demo", MARKER, "jetstream", "logs", "ast", "report", "snapshots", "notes.txt")
    line = clear_data_dir(demo)
    assert line.startswith(f"fresh run: cleared {demo} ")
    assert demo.is_dir() and list(demo.iterdir()) == []


def test_a_directory_from_before_the_marker_is_cleared_when_it_holds_only_what_up_writes(tmp_path: Path) -> None:
    demo = filled(tmp_path / "demo", "jetstream", "logs", "ast")
    clear_data_dir(demo)
    assert list(demo.iterdir()) == []


@pytest.mark.parametrize("names", [("thesis.tex",), ("jetstream", "photos")])
def test_any_other_directory_is_refused_and_untouched(tmp_path: Path, names: tuple[str, ...]) -> None:
    mine = filled(tmp_path / "mine", *names)
    with pytest.raises(ValueError, match="did not make it"):
        clear_data_dir(mine)
    assert sorted(p.name for p in mine.iterdir()) == sorted(names)


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        clear_data_dir(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"
