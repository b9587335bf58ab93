"""The rule table: which DCC Alerts a Device Alert sent to the ACB raises.

A Device Alert addressed to the DCC Access Control Broker is for the DSP itself;
the DSP raises one or more DCC Alerts (N39, N53, N54, N62, ...) to carry its
information to Service Users. Which ones is configuration, not code: a TOML file
(``dcc_rules.toml`` beside this module is the packaged, illustrative default).
The caller decides where the path comes from (e.g. ``ALERT_TIMING_DCC_RULES``).

Order matters: the n-th rule returned for a Device Alert is its n-th DCC Alert
(index n, counted from 1).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

import msgspec

from shared.gbcs import normalize_eui

__all__ = ["DEFAULT_RULES_FILE", "DccRule", "RuleTable", "RuleTableError", "load"]

DEFAULT_RULES_FILE: Final = "dcc_rules.toml"
_PACKAGED_SOURCE: Final = "<packaged dcc_rules.toml>"
_DEVICE_ALERT_CODE: Final = re.compile(r"[0-9A-F]{4}")
_DCC_ALERT_CODE: Final = re.compile(r"N[0-9]{1,3}")
_ROLE_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
_SCHEMA_VERSION: Final = 1


class RuleTableError(ValueError):
    """The rule file is missing, not TOML, or does not follow the format."""


class DccRule(msgspec.Struct, frozen=True):
    """One DCC Alert to raise, and the Service User (EUI-64) it goes to."""

    dcc_alert_code: str
    service_user_id: str


class RuleTable:
    """Device Alert code -> the DCC Alerts it raises, in order."""

    __slots__ = ("_default", "_rules", "source")

    def __init__(
        self,
        rules: Mapping[str, tuple[DccRule, ...]],
        default_rule: tuple[DccRule, ...] = (),
        *,
        source: str = "<memory>",
    ) -> None:
        self._rules: dict[str, tuple[DccRule, ...]] = {
            _device_alert_key(code, source): tuple(found) for code, found in rules.items()
        }
        self._default: tuple[DccRule, ...] = tuple(default_rule)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> RuleTable:
        """Read a rule file; ``None`` reads the packaged (illustrative) default."""
        if path is None:
            try:
                text = resources.files(__package__).joinpath(DEFAULT_RULES_FILE).read_text("utf-8")
            except (OSError, ModuleNotFoundError) as exc:
                raise RuleTableError(f"cannot read the packaged {DEFAULT_RULES_FILE}: {exc}") from None
            return cls.from_toml(text, source=_PACKAGED_SOURCE)
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleTableError(f"cannot read DCC rule file {source}: {exc}") from None
        return cls.from_toml(text, source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> RuleTable:
        """Parse and validate rule-file text."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleTableError(f"{source}: not valid TOML: {exc}") from None
        return _parse_document(document, source)

    @property
    def default_rule(self) -> tuple[DccRule, ...]:
        """What codes without a rule of their own raise (usually nothing)."""
        return self._default

    def rules_for(self, alert_code: str | None) -> tuple[DccRule, ...]:
        """The DCC Alerts a Device Alert code raises, in order (the default for unknown codes).

        An unknown code, or None (encrypted or unreadable content), gets
        :attr:`default_rule`, which is empty unless the file says otherwise.
        """
        if alert_code is None:
            return self._default
        key = alert_code.strip().upper()
        if key.startswith("0X"):
            key = key[2:]
        return self._rules.get(key, self._default)

    def codes(self) -> tuple[str, ...]:
        """The Device Alert codes that have a rule of their own, sorted."""
        return tuple(sorted(self._rules))

    def __contains__(self, alert_code: object) -> bool:
        return isinstance(alert_code, str) and alert_code.strip().upper() in self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"RuleTable({len(self._rules)} device alert codes from {self.source})"


def load(path: str | os.PathLike[str] | None = None) -> RuleTable:
    """Same as :meth:`RuleTable.load`."""
    return RuleTable.load(path)


def _device_alert_key(code: object, source: str) -> str:
    if not isinstance(code, str) or not _DEVICE_ALERT_CODE.fullmatch(code.upper()):
        raise RuleTableError(f"{source}: device alert code {code!r} is not 4 hex digits (e.g. 8F3F)")
    return code.upper()


def _parse_document(document: dict[str, Any], source: str) -> RuleTable:
    known = {"schema_version", "default_service_user", "service_users", "default", "device_alerts"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise RuleTableError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
    version = document.get("schema_version", _SCHEMA_VERSION)
    if version != _SCHEMA_VERSION:
        raise RuleTableError(f"{source}: schema_version {version!r} not supported (expected 1)")

    roles = _parse_service_users(document.get("service_users", {}), source)
    default_user_spec = document.get("default_service_user", "supplier")
    default_user = _resolve_service_user(default_user_spec, roles, source, "default_service_user")

    default_rule: tuple[DccRule, ...] = ()
    if "default" in document:
        default_section = document["default"]
        if not isinstance(default_section, dict):
            raise RuleTableError(f"{source}: [default] must be a table")
        default_rule = _parse_rule(default_section, roles, default_user, source, "[default]")

    sections = document.get("device_alerts", {})
    if not isinstance(sections, dict):
        raise RuleTableError(f"{source}: [device_alerts] must be a table")
    rules: dict[str, tuple[DccRule, ...]] = {}
    for code, section in sections.items():
        key = _device_alert_key(code, source)
        if key in rules:
            raise RuleTableError(f"{source}: device alert {key} is listed twice")
        where = f"[device_alerts.{code}]"
        if not isinstance(section, dict):
            raise RuleTableError(f"{source}: {where} must be a table with dcc_alerts")
        rules[key] = _parse_rule(section, roles, default_user, source, where)
    return RuleTable(rules, default_rule, source=source)


def _parse_service_users(section: object, source: str) -> dict[str, str]:
    if not isinstance(section, dict):
        raise RuleTableError(f"{source}: [service_users] must be a table of role = EUI-64")
    roles = {"supplier": "90-B3-D5-1F-30-01-00-00", "network_operator": "90-B3-D5-1F-30-02-00-00"}
    for role, eui in section.items():
        if not _ROLE_NAME.fullmatch(role):
            raise RuleTableError(f"{source}: service user role {role!r}: use lower-case letters, digits, _")
        roles[role] = _eui(eui, source, f"[service_users] {role}")
    return roles


def _parse_rule(
    section: dict[str, Any],
    roles: dict[str, str],
    default_user: str,
    source: str,
    where: str,
) -> tuple[DccRule, ...]:
    unknown = sorted(set(section) - {"dcc_alerts", "service_user"})
    if unknown:
        raise RuleTableError(f"{source}: {where}: unknown key(s) {', '.join(unknown)}")
    if "dcc_alerts" not in section:
        raise RuleTableError(f"{source}: {where}: dcc_alerts is missing")
    entries = section["dcc_alerts"]
    if not isinstance(entries, list):
        raise RuleTableError(f"{source}: {where}: dcc_alerts must be a list such as [\"N39\", \"N54\"]")
    rule_user = default_user
    if "service_user" in section:
        rule_user = _resolve_service_user(section["service_user"], roles, source, f"{where} service_user")
    found: list[DccRule] = []
    for position, entry in enumerate(entries, start=1):
        user = rule_user
        if isinstance(entry, dict):
            extra = sorted(set(entry) - {"code", "service_user"})
            if extra or "code" not in entry:
                raise RuleTableError(
                    f"{source}: {where}: dcc_alerts entry {position} must be "
                    f'{{ code = "N..", service_user = "..." }}'
                )
            code = entry["code"]
            if "service_user" in entry:
                user = _resolve_service_user(
                    entry["service_user"], roles, source, f"{where} dcc_alerts entry {position}"
                )
        else:
            code = entry
        if not isinstance(code, str) or not _DCC_ALERT_CODE.fullmatch(code.strip().upper()):
            raise RuleTableError(
                f"{source}: {where}: dcc_alerts entry {position} {code!r} is not a DCC Alert code such as N39"
            )
        code = code.strip().upper()
        if any(rule.dcc_alert_code == code for rule in found):
            raise RuleTableError(f"{source}: {where}: DCC Alert {code} is listed twice")
        found.append(DccRule(dcc_alert_code=code, service_user_id=user))
    return tuple(found)


def _resolve_service_user(spec: object, roles: dict[str, str], source: str, where: str) -> str:
    if not isinstance(spec, str) or not spec.strip():
        raise RuleTableError(f"{source}: {where}: service user must be a role name or an EUI-64")
    spec = spec.strip()
    if spec in roles:
        return roles[spec]
    try:
        return normalize_eui(spec)
    except ValueError:
        pass
    if _ROLE_NAME.fullmatch(spec):
        raise RuleTableError(
            f"{source}: {where}: unknown service user role {spec!r} (known: {', '.join(sorted(roles))})"
        )
    return _eui(spec, source, where)


def _eui(value: object, source: str, where: str) -> str:
    if not isinstance(value, str):
        raise RuleTableError(f"{source}: {where}: {value!r} is not an EUI-64")
    try:
        return normalize_eui(value.strip())
    except ValueError:
        raise RuleTableError(
            f"{source}: {where}: {value!r} is not an EUI-64 such as 90-B3-D5-1F-30-01-00-00"
        ) from None
