"""Every ALERT_TIMING_* and NATS_* variable is a field of ``Settings`` and every field has its
variable (``ENV_VARS`` is generated from the fields, so the two cannot drift); a variable the
code names is one of them; a bad value is a ``ConfigError`` naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.settings import ENV_VARS, ConfigError, Settings, load

REPO = Path(__file__).resolve().parents[3]


def test_env_vars_are_the_settings_fields() -> None:
    assert sorted(ENV_VARS.values()) == sorted(Settings.__struct_fields__)
    for env, field in ENV_VARS.items():
        prefix = "NATS_" if field.startswith("nats_") else "ALERT_TIMING_"
        assert env == prefix + field.upper().removeprefix("NATS_")


def test_every_variable_the_code_names_is_a_setting() -> None:
    named: set[str] = set()
    for folder in ("services", "shared", "tools", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            named |= set(re.findall(r"\bALERT_TIMING_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert named - set(ENV_VARS) == set()


@pytest.mark.parametrize(("env", "value", "message"), [
    ("ALERT_TIMING_JOURNEY_SAMPLE_RATIO", "2", "ALERT_TIMING_JOURNEY_SAMPLE_RATIO='2': expected `float` <= 1.0"),
    ("ALERT_TIMING_JOURNEY_OUTLIER_MS", "soon", "ALERT_TIMING_JOURNEY_OUTLIER_MS='soon': expected `int`"),
    ("ALERT_TIMING_PROMETHEUS_PORT", "70000", "ALERT_TIMING_PROMETHEUS_PORT='70000': expected `int` <= 65535"),
    ("ALERT_TIMING_LOG_LEVEL", "loud", "ALERT_TIMING_LOG_LEVEL='loud': expected `str` matching"),
    ("ALERT_TIMING_BATCH_SIZE", "many", "ALERT_TIMING_BATCH_SIZE='many': expected `int`"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                                           message: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as raised:
        load()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_the_telemetry_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, value in {"ALERT_TIMING_LOG_LEVEL": "debug", "ALERT_TIMING_JOURNEY_SAMPLE_RATIO": "0.5",
                       "ALERT_TIMING_JOURNEY_OUTLIER_MS": "2500", "ALERT_TIMING_PROMETHEUS_PORT": "9464",
                       "ALERT_TIMING_TARGETS": "/etc/targets.toml"}.items():
        monkeypatch.setenv(env, value)
    settings = load()
    assert (settings.log_level, settings.journey_sample_ratio, settings.journey_outlier_ms, settings.prometheus_port,
            settings.targets) == ("debug", 0.5, 2500, 9464, "/etc/targets.toml")
