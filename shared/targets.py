"""Alert-delivery targets for the operational metrics: parsed from TOML, resolved per slice.

The file (the packaged default is ``shared/targets.toml``, marked illustrative) has one
table per leg::

    illustrative = true            # optional: say the figures are placeholders

    [legs.end_to_end_ms]
    owner = "DCC"                  # who answers for the leg
    target_ms = 60_000             # within target: at most this many milliseconds
    by_region = { north = 70_000 } # optional overrides per CSP region ...
    by_category = { dcc_alert = 90_000 }  # ... and per category (wins over by_region)

A leg left out gets no operational metrics. Parsing is pure (:func:`parse_targets`);
:func:`load_targets` reads a file, or the packaged default.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Final, get_args

import msgspec

from shared.events import LEGS, Category, Region

__all__ = ["CATEGORIES", "DEFAULT_TARGETS", "REGIONS", "LegTarget", "Targets", "TargetsError", "load_targets",
           "parse_targets"]

REGIONS: Final[tuple[str, ...]] = get_args(Region)
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)
#: The packaged defaults (illustrative).
DEFAULT_TARGETS: Final = "targets.toml"
_LEG_KEYS: Final = frozenset({"owner", "target_ms", "by_region", "by_category"})


class TargetsError(ValueError):
    """The targets file is not usable; the message says where and why."""


class LegTarget(msgspec.Struct, frozen=True):
    """The target of one leg: a default, with overrides by region and by category."""

    leg: str
    owner: str
    target_ms: int
    by_region: dict[str, int] = {}
    by_category: dict[str, int] = {}

    def target_for(self, region: str, category: str) -> int:
        """The target of a record of ``region`` and ``category``: category over region over default."""
        if category in self.by_category:
            return self.by_category[category]
        return self.by_region.get(region, self.target_ms)


class Targets(msgspec.Struct, frozen=True):
    """Every leg's target, in the order of :data:`shared.events.LEGS`."""

    legs: tuple[LegTarget, ...]
    illustrative: bool
    source: str

    def rows(self) -> list[tuple[str, str, str, str, int]]:
        """(leg, owner, region, category, target_ms) for every region and category."""
        return [
            (t.leg, t.owner, region, category, t.target_for(region, category))
            for t in self.legs
            for region in REGIONS
            for category in CATEGORIES
        ]


def _milliseconds(value: Any, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise TargetsError(f"{where} must be a positive whole number of milliseconds, not {value!r}")
    return value


def _overrides(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TargetsError(f"{where} must be a table of {'|'.join(allowed)} = milliseconds")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise TargetsError(f"{where}: unknown {', '.join(unknown)} (known: {', '.join(allowed)})")
    return {key: _milliseconds(ms, f"{where}.{key}") for key, ms in value.items()}


def parse_targets(text: str, source: str = "<targets>") -> Targets:
    """Parse a targets TOML document; raise :class:`TargetsError` saying what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetsError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"illustrative", "legs"})
    if unknown:
        raise TargetsError(f"{source}: unknown key {', '.join(unknown)} (known: illustrative, legs)")
    illustrative = doc.get("illustrative", False)
    if not isinstance(illustrative, bool):
        raise TargetsError(f"{source}: illustrative must be true or false")
    legs = doc.get("legs")
    if not isinstance(legs, dict) or not legs:
        raise TargetsError(f"{source}: no [legs.<leg>] tables (legs: {', '.join(LEGS)})")
    unknown = sorted(set(legs) - set(LEGS))
    if unknown:
        raise TargetsError(f"{source}: unknown leg {', '.join(unknown)} (legs: {', '.join(LEGS)})")
    parsed = []
    for leg in LEGS:
        table = legs.get(leg)
        if table is None:
            continue
        where = f"{source}: legs.{leg}"
        if not isinstance(table, dict):
            raise TargetsError(f"{where} must be a table")
        extra = sorted(set(table) - _LEG_KEYS)
        if extra:
            raise TargetsError(f"{where}: unknown key {', '.join(extra)} (known: {', '.join(sorted(_LEG_KEYS))})")
        owner = table.get("owner")
        if not isinstance(owner, str) or not owner.strip():
            raise TargetsError(f"{where}.owner must be a non-empty string (who answers for the leg)")
        if "target_ms" not in table:
            raise TargetsError(f"{where}.target_ms is missing")
        parsed.append(LegTarget(
            leg=leg,
            owner=owner.strip(),
            target_ms=_milliseconds(table["target_ms"], f"{where}.target_ms"),
            by_region=_overrides(table.get("by_region"), REGIONS, f"{where}.by_region"),
            by_category=_overrides(table.get("by_category"), CATEGORIES, f"{where}.by_category"),
        ))
    return Targets(tuple(parsed), illustrative, source)


def load_targets(path: str | Path | None = None) -> Targets:
    """The targets in ``path``, or the packaged (illustrative) defaults when None."""
    if path is None:
        text = resources.files("shared").joinpath(DEFAULT_TARGETS).read_text(encoding="utf-8")
        return parse_targets(text, f"packaged {DEFAULT_TARGETS}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetsError(f"no such targets file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetsError(f"cannot read targets file {path}: {exc}") from None
    return parse_targets(text, str(path))
