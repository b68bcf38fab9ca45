"""A child's environment (eventrouter/environment.py): the basics, the Kafka security file's names, and
only the names it is given."""

from __future__ import annotations

from pathlib import Path

from eventrouter.environment import basics, child_environment
from schemas.runtime.kafka import KAFKA_CONFIG_ENV


def test_a_child_gets_the_basics_the_kafka_names_and_its_own_names_only(tmp_path: Path) -> None:
    kafka = tmp_path / "kafka.properties"
    kafka.write_text("security.protocol=SASL_SSL\nsasl.password=${KAFKA_PASSWORD}\n# ${NOT_THIS}\n")
    environ = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C.UTF-8", "PYTHONPATH": "/p", "VIRTUAL_ENV": "/v",
               "EVENTROUTER_HOME": "/e", KAFKA_CONFIG_ENV: str(kafka), "KAFKA_PASSWORD": "kp", "NOT_THIS": "x",
               "AMP_KEY": "a", "BRAZE_API_KEY": "b", "EVENTROUTER_API_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "s"}
    env = child_environment(environ, {"AMP_KEY", "UNSET_ONE"})
    assert env == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C.UTF-8", "PYTHONPATH": "/p", "VIRTUAL_ENV": "/v",
                   "EVENTROUTER_HOME": "/e", KAFKA_CONFIG_ENV: str(kafka), "KAFKA_PASSWORD": "kp", "AMP_KEY": "a"}
    assert "KAFKA_PASSWORD" not in basics(environ)
