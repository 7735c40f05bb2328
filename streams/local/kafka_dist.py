"""Apache Kafka for the local broker: Java found, the pinned jars fetched with Maven to a cache."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from streams.errors import BrokerError

logger = logging.getLogger(__name__)


KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"  # the log4j2 Kafka 4.1.1 is built with; binds its slf4j 1.7 logging
JAVA_MIN = 17
# --------------------------------------------------------------------------- Apache Kafka


def cache_root() -> Path:
    """Where fetched jars live: ``.cache/`` of the checkout, else the user's cache folder."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "leadstream"


def kafka_libs(root: Path | None = None) -> Path:
    """Return the folder of Apache Kafka's jars (present once :func:`fetch_kafka` succeeded)."""
    return (root or cache_root()) / "kafka" / KAFKA_VERSION / "libs"


def java_binary() -> str | None:
    """Return a ``java`` of version 17 or later (``$JAVA_HOME`` first, then ``PATH``), or None."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        try:
            out = subprocess.run(  # noqa: S603
                [java, "-version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
        if match:
            major = int(match.group(1))
            if major == 1 and match.group(2):  # "1.8.0" style
                major = int(match.group(2))
            if major >= JAVA_MIN:
                return java
    return None


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.leadstream.local</groupId>
  <artifactId>apache-kafka-for-tests</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""


def fetch_kafka(root: Path | None = None, quiet: bool = False) -> Path:
    """Fetch Apache Kafka's jars with Maven (once); return the folder of jars.

    Raises:
        BrokerError: Maven is missing or the fetch failed.

    """
    libs = kafka_libs(root)
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) is not installed: cannot fetch Apache Kafka"
        raise BrokerError(msg)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
    if libs.exists():
        shutil.rmtree(libs)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    if not quiet:
        print(f"fetching Apache Kafka {KAFKA_VERSION} with Maven into {libs}", file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0 or not any(libs.glob(f"kafka_{SCALA_VERSION}-*.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        msg = "fetching Apache Kafka with Maven failed:\n" + "\n".join(tail)
        raise BrokerError(msg)
    done.write_text(f"{KAFKA_VERSION}\n")
    if not quiet:
        count = len(list(libs.glob("*.jar")))
        print(
            f"Apache Kafka {KAFKA_VERSION}: {count} jars in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
    return libs


LOG4J2_PROPERTIES = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""
