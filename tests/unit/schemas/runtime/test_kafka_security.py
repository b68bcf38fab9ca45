"""The Kafka security settings file every client reads ($EVENTROUTER_KAFKA_CONFIG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigurationError
from schemas.runtime.kafka import (
    KAFKA_CONFIG_ENV,
    admin_settings,
    consumer_settings,
    producer_settings,
    security_settings,
)


def test_without_a_file_clients_get_no_security_settings() -> None:
    assert security_settings({}) == {}


def test_settings_are_read_with_their_env_references_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# ours\nsecurity.protocol=SASL_SSL\nsasl.mechanism = SCRAM-SHA-512\nsasl.username=er\n"
                    "sasl.password=${KAFKA_PW}\nssl.ca.location=/etc/ca.pem\n")
    monkeypatch.setenv(KAFKA_CONFIG_ENV, str(path))
    monkeypatch.setenv("KAFKA_PW", "s3cret")
    expected = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "er",
                "sasl.password": "s3cret", "ssl.ca.location": "/etc/ca.pem"}
    assert security_settings() == expected
    for settings in (producer_settings("b:1"), consumer_settings("b:1", "g"), admin_settings("b:1")):
        assert expected.items() <= settings.items()


def test_a_bad_file_fails_fast_naming_the_problem_never_a_value(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SASL_SSL\nbootstrap.servers=elsewhere:9092\nsasl.password=${UNSET_PW}\n")
    with pytest.raises(ConfigurationError, match=r"line 2: 'bootstrap.servers' is not a Kafka security setting"):
        security_settings({KAFKA_CONFIG_ENV: str(path)})
    path.write_text("sasl.password=${UNSET_PW}\n")
    with pytest.raises(ConfigurationError, match="UNSET_PW"):
        security_settings({KAFKA_CONFIG_ENV: str(path)})
    with pytest.raises(ConfigurationError, match="No such file"):
        security_settings({KAFKA_CONFIG_ENV: str(tmp_path / "missing")})
