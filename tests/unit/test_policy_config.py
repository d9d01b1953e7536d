from __future__ import annotations

import pytest

from oidc_idle.config import WorkerSettings, parse_duration_ms
from oidc_idle.errors import ConfigError, PolicyError
from oidc_idle.policy import ATTR_ABSOLUTE, ATTR_IDLE, ATTR_KINDS, ATTR_WARN, Policy


def test_default_policy_is_fifteen_minutes():
    p = Policy.from_realm_attributes({})
    assert p.idle_timeout_ms == 15 * 60_000
    assert p.warning_lead_ms == 120_000


def test_policy_round_trips_through_realm_attributes():
    p = Policy(idle_timeout_ms=300_000, warning_lead_ms=30_000, absolute_lifetime_ms=3_600_000,
               counted_kinds=frozenset({"click", "keypress"}))
    assert Policy.from_realm_attributes(p.to_realm_attributes()) == p


@pytest.mark.parametrize("attrs, attribute", [
    ({ATTR_IDLE: "0"}, ATTR_IDLE),
    ({ATTR_IDLE: "-5"}, ATTR_IDLE),
    ({ATTR_IDLE: "ten"}, ATTR_IDLE),
    ({ATTR_IDLE: "nan"}, ATTR_IDLE),
    ({ATTR_IDLE: "60", ATTR_WARN: "60"}, ATTR_WARN),
    ({ATTR_IDLE: "60", ATTR_WARN: "-1"}, ATTR_WARN),
    ({ATTR_IDLE: "600", ATTR_ABSOLUTE: "300"}, ATTR_ABSOLUTE),
    ({ATTR_KINDS: "click,wiggle"}, ATTR_KINDS),
    ({ATTR_KINDS: "click,poll"}, ATTR_KINDS),
])
def test_bad_policy_attribute_is_named(attrs, attribute):
    with pytest.raises(PolicyError) as err:
        Policy.from_realm_attributes(attrs)
    assert err.value.detail["attribute"] == attribute
    assert attribute in err.value.description


def test_deadline_is_last_activity_plus_idle_capped_by_absolute():
    p = Policy(idle_timeout_ms=60_000, warning_lead_ms=10_000, absolute_lifetime_ms=100_000)
    assert p.deadline(started_at=0, last_activity_at=10_000) == 70_000
    assert p.deadline(started_at=0, last_activity_at=90_000) == 100_000
    assert p.warn_at(70_000) == 60_000


@pytest.mark.parametrize("text, ms", [("30s", 30_000), ("15m", 900_000), ("1h", 3_600_000),
                                      ("250ms", 250), ("90", 90_000), ("1.5s", 1500)])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "soon", "5x", "-3s", True])
def test_bad_duration_names_the_key(text):
    with pytest.raises(ConfigError) as err:
        parse_duration_ms(text, key="OIDC_IDLE_X")
    assert "OIDC_IDLE_X" in err.value.description


BASE = {"OIDC_IDLE_KEYCLOAK_URL": "http://127.0.0.1:8080", "OIDC_IDLE_REALM": "demo",
        "OIDC_IDLE_CLIENT_ID": "w", "OIDC_IDLE_CLIENT_SECRET": "s"}


def test_settings_from_env_defaults(tmp_path):
    s = WorkerSettings.from_env({**BASE, "OIDC_IDLE_DB": str(tmp_path / "x.db")})
    assert s.issuer == "http://127.0.0.1:8080/realms/demo"
    assert s.public_url == "http://127.0.0.1:8780"
    assert s.sweep_interval_ms == 500
    assert "client_secret" not in repr(s)


@pytest.mark.parametrize("key, value", [
    ("OIDC_IDLE_KEYCLOAK_URL", "ftp://x"), ("OIDC_IDLE_REALM", ""), ("OIDC_IDLE_REALM", "a b"),
    ("OIDC_IDLE_CLIENT_ID", ""), ("OIDC_IDLE_CLIENT_SECRET", ""), ("OIDC_IDLE_BIND", "nohost"),
    ("OIDC_IDLE_BIND", "127.0.0.1:99999"), ("OIDC_IDLE_SWEEP_INTERVAL", "1ms"),
    ("OIDC_IDLE_THREADS", "many"), ("OIDC_IDLE_DB", "/no/such/dir/x.db"),
])
def test_bad_setting_fails_at_start_naming_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        WorkerSettings.from_env({**BASE, key: value})
    assert key in err.value.description
