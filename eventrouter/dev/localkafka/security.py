"""SASL/SCRAM and TLS for the local broker: what tests of secured clients (and a developer who wants
one) need. SCRAM-SHA-512 users are added when the storage is formatted; a self-signed certificate for
127.0.0.1 is made with the JDK's keytool. `client_properties()` is the file every eventrouter process
reads through $EVENTROUTER_KAFKA_CONFIG."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eventrouter.dev.localkafka.errors import StartError

MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "broker"


@dataclass(frozen=True)
class Security:
    """SCRAM users (the broker's own is added) and, when `tls_dir` is set, TLS on the client listener."""

    users: tuple[tuple[str, str], ...]
    broker_password: str
    tls_dir: str | None = None
    store_password: str = ""

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.tls_dir else "SASL_PLAINTEXT"

    def scram_arguments(self) -> list[str]:
        every = ((BROKER_USER, self.broker_password), *self.users)
        return [part for name, password in every
                for part in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]

    def broker_properties(self) -> dict[str, str]:
        listener = self.protocol.lower()
        props = {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.{listener}.{MECHANISM.lower()}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{BROKER_USER}" password="{self.broker_password}";',
        }
        if self.tls_dir:
            props |= {
                "ssl.keystore.type": "PKCS12", "ssl.keystore.location": f"{self.tls_dir}/broker.p12",
                "ssl.keystore.password": self.store_password, "ssl.key.password": self.store_password,
                "ssl.truststore.type": "PKCS12", "ssl.truststore.location": f"{self.tls_dir}/trust.p12",
                "ssl.truststore.password": self.store_password,
            }
        return props

    def client_properties(self, user: str, password: str) -> str:
        """librdkafka settings for `user` (the password written as given: a ${ENV} reference keeps it out)."""
        lines = [f"security.protocol={self.protocol}", f"sasl.mechanism={MECHANISM}", f"sasl.username={user}",
                 f"sasl.password={password}"]
        if self.tls_dir:
            lines.append(f"ssl.ca.location={self.tls_dir}/ca.pem")
        return "\n".join(lines) + "\n"

    def admin_client(self) -> dict[str, str]:
        """Settings for the broker's own readiness checks (as the broker user)."""
        out = {"security.protocol": self.protocol, "sasl.mechanism": MECHANISM, "sasl.username": BROKER_USER,
               "sasl.password": self.broker_password}
        if self.tls_dir:
            out["ssl.ca.location"] = f"{self.tls_dir}/ca.pem"
        return out


def new_security(users: dict[str, str], tls_dir: Path | None) -> Security:
    """Users as given; a random broker password; with `tls_dir`, a fresh certificate for 127.0.0.1 there."""
    store_password = secrets.token_hex(12)
    if tls_dir is not None:
        make_certificate(tls_dir, store_password)
    return Security(tuple(users.items()), secrets.token_hex(12), str(tls_dir) if tls_dir else None, store_password)


def make_certificate(folder: Path, password: str) -> None:
    """broker.p12 (key and self-signed certificate for 127.0.0.1 and localhost), trust.p12 and ca.pem."""
    keytool = shutil.which("keytool")
    if keytool is None:
        raise StartError("keytool (from the JDK) is needed to make a TLS certificate")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("broker.p12", "trust.p12", "ca.pem"):
        (folder / name).unlink(missing_ok=True)
    steps = [
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "30",
         "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-keystore", str(folder / "broker.p12"),
         "-storetype", "PKCS12", "-storepass", password, "-keypass", password],
        ["-exportcert", "-rfc", "-alias", "broker", "-keystore", str(folder / "broker.p12"), "-storepass", password,
         "-file", str(folder / "ca.pem")],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(folder / "ca.pem"), "-keystore",
         str(folder / "trust.p12"), "-storetype", "PKCS12", "-storepass", password],
    ]
    for step in steps:
        done = subprocess.run([keytool, *step], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise StartError(f"keytool {step[0]} failed: {(done.stdout + done.stderr)[-500:]}")
