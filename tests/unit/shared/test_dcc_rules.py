"""The DCC rule table: Device Alerts to the ACB -> DCC Alerts, in order."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from shared.dcc_rules import DccRule, RuleTable, RuleTableError, load

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
NETWORK_OPERATOR = "90-B3-D5-1F-30-02-00-00"


@pytest.fixture(scope="module")
def packaged() -> RuleTable:
    return RuleTable.load()


def test_packaged_default_says_it_is_illustrative() -> None:
    text = resources.files("shared").joinpath("dcc_rules.toml").read_text("utf-8")
    assert "ILLUSTRATIVE" in text


def test_tamper_raises_two_dcc_alerts_in_order(packaged: RuleTable) -> None:
    assert packaged.rules_for("8F3F") == (
        DccRule(dcc_alert_code="N39", service_user_id=SUPPLIER),
        DccRule(dcc_alert_code="N54", service_user_id=SUPPLIER),
    )


@pytest.mark.parametrize("code", ["810D", "8F0F", "8F72", "8F12", "8F8B", "8071",
                                  *(f"8F{n:02X}" for n in range(0x20, 0x2E))])
def test_required_codes_have_rules(packaged: RuleTable, code: str) -> None:
    rules = packaged.rules_for(code)
    assert rules, code
    assert all(rule.dcc_alert_code in {"N39", "N53", "N54", "N62"} for rule in rules)
    assert all(rule.service_user_id == SUPPLIER for rule in rules)


def test_lookup_is_case_insensitive(packaged: RuleTable) -> None:
    assert packaged.rules_for("8f3f") == packaged.rules_for("8F3F") == packaged.rules_for("0x8F3F")
    assert "8f3f" in packaged and "8F3F" in packaged and "1234" not in packaged


def test_unknown_and_missing_codes_get_the_default(packaged: RuleTable) -> None:
    assert packaged.default_rule == ()
    assert packaged.rules_for("1234") == ()
    assert packaged.rules_for(None) == ()


def test_load_function_and_len(packaged: RuleTable) -> None:
    assert load().codes() == packaged.codes()
    assert len(packaged) == len(packaged.codes()) >= 20
    assert "packaged" in repr(packaged)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_custom_file_roles_overrides_and_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        default_service_user = "network_operator"

        [service_users]
        energy_co = "90b3d51f30010099"

        [default]
        dcc_alerts = ["N62"]

        [device_alerts.8f3f]
        dcc_alerts = ["N39", { code = "N54", service_user = "supplier" },
                      { code = "N53", service_user = "00-11-22-33-44-55-66-77" }]

        [device_alerts.810D]
        service_user = "energy_co"
        dcc_alerts = ["n53"]
        """,
    )
    for table in (RuleTable.load(str(path)), RuleTable.load(path)):
        assert table.rules_for("8F3F") == (
            DccRule("N39", NETWORK_OPERATOR),
            DccRule("N54", SUPPLIER),
            DccRule("N53", "00-11-22-33-44-55-66-77"),
        )
        assert table.rules_for("810D") == (DccRule("N53", "90-B3-D5-1F-30-01-00-99"),)
        assert table.default_rule == (DccRule("N62", NETWORK_OPERATOR),)
        assert table.rules_for("9999") == table.rules_for(None) == (DccRule("N62", NETWORK_OPERATOR),)
        assert table.source == str(path)


def test_empty_rule_list_means_no_dcc_alert(tmp_path: Path) -> None:
    table = RuleTable.load(write(tmp_path, "[device_alerts.8F3F]\ndcc_alerts = []\n"))
    assert table.rules_for("8F3F") == ()
    assert "8F3F" in table


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[device_alerts.8F3]\ndcc_alerts = ['N39']", "not 4 hex digits"),
        ("[device_alerts.XYZW]\ndcc_alerts = ['N39']", "not 4 hex digits"),
        ("[device_alerts.8F3F]\ndcc_alerts = ['X39']", "not a DCC Alert code"),
        ("[device_alerts.8F3F]\ndcc_alerts = [39]", "not a DCC Alert code"),
        ("[device_alerts.8F3F]\ndcc_alerts = 'N39'", "must be a list"),
        ("[device_alerts.8F3F]\ndcc_alerts = ['N39', 'n39']", "listed twice"),
        ("[device_alerts.8F3F]\nservice_user = 'landlord'\ndcc_alerts = ['N39']", "unknown service user role"),
        ("[device_alerts.8F3F]\nservice_user = '90-B3-ZZ'\ndcc_alerts = ['N39']", "not an EUI-64"),
        ("[device_alerts.8F3F]\ndcc_alerts = [{ service_user = 'supplier' }]", "entry 1"),
        ("[device_alerts.8F3F]\nalerts = ['N39']", "unknown key"),
        ("[device_alerts.8F3F]", "dcc_alerts is missing"),
        ("[device_alerts]\n8F3F = 'N39'", "must be a table"),
        ("[device_alerts.8F3F]\ndcc_alerts = ['N39']\n[device_alerts.8f3f]\ndcc_alerts = ['N54']", "listed twice"),
        ("[service_users]\nSupplier = '90-B3-D5-1F-30-01-00-00'", "role"),
        ("[service_users]\nsupplier = 'nope'", "not an EUI-64"),
        ("default_service_user = 'nobody'", "unknown service user role"),
        ("schema_version = 2", "schema_version"),
        ("rules = []", "unknown top-level key"),
        ("default = 3", "must be a table"),
        ("[device_alerts.8F3F\n", "not valid TOML"),
    ],
)
def test_invalid_files_are_rejected_clearly(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleTableError, match=match) as raised:
        RuleTable.load(path)
    assert str(path) in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RuleTableError, match="cannot read"):
        RuleTable.load(tmp_path / "absent.toml")


def test_from_toml_and_in_memory_tables() -> None:
    table = RuleTable.from_toml("[device_alerts.8F72]\ndcc_alerts = ['N62']\n")
    assert table.rules_for("8F72") == (DccRule("N62", SUPPLIER),)
    direct = RuleTable({"8f72": (DccRule("N62", SUPPLIER),)})
    assert direct.rules_for("8F72") == table.rules_for("8F72")
    with pytest.raises(RuleTableError):
        RuleTable({"nope": ()})


def test_rule_table_error_is_a_value_error() -> None:
    assert issubclass(RuleTableError, ValueError)
