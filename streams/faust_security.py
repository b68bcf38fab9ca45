"""The Kafka security settings of $EVENTROUTER_KAFKA_CONFIG (librdkafka's names, schemas/runtime/kafka.py),
translated for the Faust engine's aiokafka clients: the same file serves both engines.

librdkafka:  https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md
aiokafka:    https://aiokafka.readthedocs.io/en/stable/api.html#aiokafka.helpers.create_ssl_context
Faust:       https://faust-streaming.github.io/faust/userguide/settings.html#broker-credentials
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import ConfigurationError

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# the librdkafka keys this translation takes; any other is refused by name (never silently dropped)
TAKEN: Final = frozenset({
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
    "enable.ssl.certificate.verification", "ssl.endpoint.identification.algorithm",
})


def faust_credentials(settings: Mapping[str, str]) -> Any:
    """faust.SSLCredentials or faust.SASLCredentials for `settings`, or None for a plaintext broker.
    A setting aiokafka has no counterpart for is a ConfigurationError naming it."""
    import faust

    unknown = sorted(set(settings) - TAKEN)
    if unknown:
        raise ConfigurationError(f"the faust engine cannot use the Kafka setting(s) {', '.join(unknown)}; "
                                 "use the default engine (--engine kafka)")
    protocol = settings.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ConfigurationError(f"security.protocol={protocol}: one of {', '.join(PROTOCOLS)}")
    context = ssl_context(settings) if protocol.endswith("SSL") else None
    if not protocol.startswith("SASL"):
        return None if context is None else faust.SSLCredentials(context)
    mechanism = settings.get("sasl.mechanism", settings.get("sasl.mechanisms", "PLAIN")).upper()
    if mechanism not in MECHANISMS:
        raise ConfigurationError(f"sasl.mechanism={mechanism}: the faust engine takes {', '.join(MECHANISMS)}")
    missing = [key for key in ("sasl.username", "sasl.password") if not settings.get(key)]
    if missing:
        raise ConfigurationError(f"{protocol} needs {' and '.join(missing)}")
    return faust.SASLCredentials(username=settings["sasl.username"], password=settings["sasl.password"],
                                 ssl_context=context, mechanism=mechanism)


def ssl_context(settings: Mapping[str, str]) -> Any:
    """The TLS context librdkafka would build from the same settings: the CA (or the system's), a client
    certificate if given, the broker's name checked unless verification or identification is turned off."""
    import ssl

    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=settings.get("ssl.ca.location"),
                                     certfile=settings.get("ssl.certificate.location"),
                                     keyfile=settings.get("ssl.key.location"),
                                     password=settings.get("ssl.key.password"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"the TLS files of the Kafka settings: {exc}") from None
    if settings.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False
    if settings.get("enable.ssl.certificate.verification", "true").lower() == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
