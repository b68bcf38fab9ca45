"""The Kafka security file (librdkafka's names) translated for the Faust engine's aiokafka clients: what
it takes, and a clear error naming what it cannot take."""

from __future__ import annotations

import ssl

import faust
import pytest

from schemas.errors import ConfigurationError
from streams.faust_security import faust_credentials

SCRAM = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "eventrouter",
         "sasl.password": "s3cret"}


def test_a_plaintext_broker_needs_no_credentials() -> None:
    assert faust_credentials({}) is None
    assert faust_credentials({"security.protocol": "plaintext"}) is None


def test_scram_over_tls_is_sasl_credentials_with_a_context_that_checks_the_brokers_name() -> None:
    credentials = faust_credentials(SCRAM)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("eventrouter", "s3cret")
    assert credentials.ssl_context.check_hostname and credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert "s3cret" not in repr(credentials)


def test_scram_without_tls_and_tls_without_sasl() -> None:
    plain = faust_credentials({**SCRAM, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256"})
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    assert plain.mechanism.value == "SCRAM-SHA-256"
    tls = faust_credentials({"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"})
    assert isinstance(tls, faust.SSLCredentials)
    assert tls.context.verify_mode == ssl.CERT_NONE and not tls.context.check_hostname
    named = faust_credentials({"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "none"})
    assert not named.context.check_hostname and named.context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("settings", "message"), [
    ({**SCRAM, "ssl.keystore.location": "/k.p12"}, "cannot use the Kafka setting(s) ssl.keystore.location"),
    ({**SCRAM, "sasl.mechanism": "GSSAPI"}, "sasl.mechanism=GSSAPI"),
    ({**SCRAM, "security.protocol": "TLS"}, "security.protocol=TLS"),
    ({k: v for k, v in SCRAM.items() if k != "sasl.password"}, "needs sasl.password"),
    ({**SCRAM, "ssl.ca.location": "/nowhere/ca.pem"}, "the TLS files of the Kafka settings"),
])
def test_what_aiokafka_cannot_take_is_a_clear_error(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        faust_credentials(settings)
    assert "s3cret" not in str(caught.value)
