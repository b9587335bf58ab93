"""The shape of a CSP's power-outage notification, and what the DSP raises for it.

A CSP notifies the DSP when a Comms Hub has been without power for a while; an outage of
three minutes or more raises DCC Alert AD1 to the network operator. Public sources do not
say what the notification looks like, so its field names are configuration: a TOML file
(``csp_notifications.toml`` beside this module is the packaged, illustrative default). The
caller decides where the path comes from (e.g. ``ALERT_TIMING_CSP_NOTIFICATIONS``).
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from typing import Any, Final

import msgspec

from shared.gbcs import normalize_eui

__all__ = ["DEFAULT_FILE", "NotificationConfigError", "PowerOutageShape", "load"]

DEFAULT_FILE: Final = "csp_notifications.toml"
_CODE: Final = re.compile(r"[A-Z][A-Z0-9]{1,7}")


class NotificationConfigError(ValueError):
    """The notification file is missing, not TOML, or does not follow the format."""


class PowerOutageShape(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Field names of a power-outage notification and the DCC Alert it raises."""

    type_field: str = "notificationType"
    type_value: str = "powerOutage"
    id_field: str = "notificationId"
    duration_field: str = "outageDurationSeconds"
    chf_received_field: str = "chfReceivedTimestamp"
    csp_received_field: str = "cspReceivedTimestamp"
    csp_sent_field: str = "cspSentTimestamp"
    min_duration_s: int = 180
    dcc_alert_code: str = "AD1"
    service_user: str = "90-B3-D5-1F-30-02-00-00"

    def __post_init__(self) -> None:
        names = (self.type_field, self.id_field, self.duration_field, self.chf_received_field,
                 self.csp_received_field, self.csp_sent_field)
        if any(not n for n in names) or len(set(names) | {"commsHubId"}) != len(names) + 1:
            raise ValueError("field names must be non-empty, distinct and not commsHubId")
        if self.min_duration_s < 0:
            raise ValueError("min_duration_s must be >= 0")
        if not _CODE.fullmatch(self.dcc_alert_code):
            raise ValueError(f"dcc_alert_code {self.dcc_alert_code!r} is not a DCC Alert code such as AD1")
        try:
            canonical = normalize_eui(self.service_user)
        except ValueError:
            canonical = None
        if canonical != self.service_user:
            raise ValueError(f"service_user {self.service_user!r} is not an EUI-64 written as 90-B3-D5-1F-30-02-00-00")

    def is_notification(self, obj: dict[str, Any]) -> bool:
        """Whether a decoded feed message is this notification (and not an alert)."""
        return self.type_field in obj

    @property
    def fields(self) -> frozenset[str]:
        return frozenset((self.type_field, self.id_field, self.duration_field, "commsHubId",
                          self.chf_received_field, self.csp_received_field, self.csp_sent_field))


class _Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    schema_version: int = 1
    power_outage: PowerOutageShape = PowerOutageShape()


def from_toml(text: str, *, source: str = "<string>") -> PowerOutageShape:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NotificationConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(document, _Document)
    except (msgspec.ValidationError, ValueError) as exc:
        raise NotificationConfigError(f"{source}: {exc}") from None
    if parsed.schema_version != 1:
        raise NotificationConfigError(f"{source}: schema_version {parsed.schema_version!r} not supported (expected 1)")
    return parsed.power_outage


def load(path: str | os.PathLike[str] | None = None) -> PowerOutageShape:
    """Read a notification file; ``None`` reads the packaged (illustrative) default."""
    if path is None:
        try:
            text = resources.files(__package__).joinpath(DEFAULT_FILE).read_text("utf-8")
        except (OSError, ModuleNotFoundError) as exc:
            raise NotificationConfigError(f"cannot read the packaged {DEFAULT_FILE}: {exc}") from None
        return from_toml(text, source=f"<packaged {DEFAULT_FILE}>")
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise NotificationConfigError(f"cannot read CSP notification file {source}: {exc}") from None
    return from_toml(text, source=source)
