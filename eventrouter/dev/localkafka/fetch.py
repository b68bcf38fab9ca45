"""Fetch the Apache Kafka broker jars from Maven Central with Maven, once, into a cache folder."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from eventrouter.dev.localkafka.errors import FetchError, ToolMissingError

log = logging.getLogger(__name__)

_DOCKER_HINT = (
    "Alternatively run Kafka with Docker: `docker compose up kafka` (see docker-compose.yml) "
    "and pass --bootstrap-servers 127.0.0.1:9092."
)


def require_java(min_major: int = 17) -> str:
    """Return the java executable, or raise naming what to install."""
    java = shutil.which("java")
    if java is None:
        raise ToolMissingError(
            f"Java {min_major}+ is required to run the embedded Kafka broker but `java` is not on PATH. "
            f"Install a JDK (e.g. `apt-get install openjdk-17-jre-headless`). {_DOCKER_HINT}"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < min_major:
            raise ToolMissingError(
                f"Java {min_major}+ is required, found Java {major} at {java}. "
                f"Install openjdk-17 or newer. {_DOCKER_HINT}"
            )
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissingError(
            "Maven is required to fetch the Kafka broker jars from Maven Central but `mvn` is not on PATH. "
            f"Install it (e.g. `apt-get install maven`). {_DOCKER_HINT}"
        )
    return mvn


def libs_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"kafka-{version}" / "libs"


def ensure_jars(cache_dir: Path, version: str) -> Path:
    """Return the folder of broker jars for `version`, fetching them on first use.

    Concurrent callers (parallel test sessions, a demo) serialise on a lock file; the jars
    are copied to a temporary folder and renamed into place so a half fetch is never used.
    """
    target = libs_dir(cache_dir, version)
    marker = target / ".complete"
    if marker.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return target
        mvn = require_maven()
        staging = target.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        pom = resources.files("eventrouter.dev.localkafka").joinpath("pom.xml")
        with resources.as_file(pom) as pom_path:
            cmd = [
                mvn, "-B", "-q", "-f", str(pom_path),
                f"-Dkafka.version={version}",
                f"-Dmaven.repo.local={cache_dir / 'm2'}",
                f"-Dlibs.dir={staging}",
                "dependency:copy-dependencies",
            ]
            log.info("fetching Apache Kafka %s jars with Maven into %s", version, target)
            started = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                  cwd=str(cache_dir), env={**os.environ, "MAVEN_OPTS": "-Xmx512m"})
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise FetchError(f"Maven could not fetch Kafka {version} (exit {proc.returncode}):\n{tail}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        marker.write_text(f"{time.monotonic() - started:.1f}\n")
        log.info("fetched Kafka %s in %.1fs", version, time.monotonic() - started)
    return target
