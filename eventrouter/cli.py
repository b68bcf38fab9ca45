"""The `eventrouter` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from eventrouter import commands
from eventrouter.ops.commands import add_commands as add_ops_commands
from schemas.catalogue import KINDS


def _within_ms(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 60000 ms")
    return value


def _memory_keys(text: str) -> int:
    value = int(text)
    if value < 1_000:
        raise argparse.ArgumentTypeError(f"{value} is under 1000 (each batch's keys must fit)")
    return value


def _bootstrap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", default=os.environ.get("EVENTROUTER_BOOTSTRAP_SERVERS",
                                                                      "127.0.0.1:9092"))
    parser.add_argument("--topic-prefix", default="eventrouter")


LOG_LEVEL_ENV = "EVENTROUTER_LOG_LEVEL"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level_option(parser: argparse.ArgumentParser) -> None:
    """For the long-running commands: INFO shows lifecycle lines (started, assigned, stopped); WARNING and
    ERROR are what needs a look. The processes `up` and `demo` start inherit it ($EVENTROUTER_LOG_LEVEL)."""
    default = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    parser.add_argument("--log-level", type=str.upper, choices=_LEVELS,
                        default=default if default in _LEVELS else "INFO", help="default: INFO")


def _engine_option(parser: argparse.ArgumentParser, whose: str = "") -> None:
    parser.add_argument("--engine", choices=["kafka", "faust"], default="kafka",
                        help=f"{whose}kafka: a confluent-kafka consumer group (default); faust: faust-streaming "
                             "agents (docs/engines.md says what each guarantees and costs)")


def _vendor_list(text: str) -> tuple[str, ...]:
    """`--vendors ga4,tiktok`: kinds of the catalogue, each once."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        problem = f"unknown {', '.join(unknown)}" if unknown else "none given" if not kinds else "one named twice"
        raise argparse.ArgumentTypeError(f"{problem}; the vendors are: {', '.join(KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    from eventrouter.dev.localkafka import DEFAULT_KAFKA_VERSION

    parser = argparse.ArgumentParser(prog="eventrouter", description="Kafka-native server-side event router")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--kafka-config", type=Path, default=None,
                        help="Kafka security settings (a librdkafka properties file: security.protocol, sasl.*, "
                             "ssl.*; ${ENV} values) for every client of this process and the ones it starts")
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="run a real Apache Kafka (KRaft) broker locally, no Docker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--nodes", type=int, choices=[1, 3], default=1, help="1 broker, or a 3-broker cluster")
    kafka.add_argument("--port", type=int, default=None, help="client port of node 1 (default: a free port)")
    kafka.add_argument("--state-dir", type=Path, default=None, help="default: $EVENTROUTER_HOME/kafka")
    kafka.add_argument("--kafka-version", default=DEFAULT_KAFKA_VERSION)
    kafka.add_argument("--scram", action="append", metavar="USER:PASSWORD",
                       help="SASL/SCRAM-SHA-512 on the client listener with this user (repeatable)")
    kafka.add_argument("--tls", action="store_true", help="with --scram: TLS too (a certificate for 127.0.0.1)")
    kafka.set_defaults(func=commands.kafka_command)

    demo = sub.add_parser("demo", help="the main job: the pipeline end to end on an embedded broker")
    demo.add_argument("--events", type=int, default=600)
    demo.add_argument("--keep", action="store_true", help="leave the broker running afterwards")
    _engine_option(demo, "the stream workers' engine: ")
    demo.add_argument("--vendors", type=_vendor_list, default=KINDS, metavar="KIND,...",
                      help="route to these vendors' stand-ins only (default: every vendor; `eventrouter vendors` "
                           "lists them)")
    demo.add_argument("--keep-running", action="store_true",
                      help="after the summary, keep the whole stack running until Ctrl-C")
    _log_level_option(demo)
    demo.set_defaults(func=commands.demo_command)

    vendors = sub.add_parser("vendors", help="the destinations: what each connection needs, its limits, what it "
                                             "deduplicates on, how old an event it takes, which ids it matches on")
    vendors.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND", help="one vendor's facts in full")
    vendors.set_defaults(func=commands.vendors_command)

    up = sub.add_parser("up", help="run the stack in the foreground against a broker: gateway, workers, "
                                   "a forwarder per integration")
    up.add_argument("config", type=Path, help="the config file (applied as a revision if it changed)")
    _bootstrap_option(up)
    up.add_argument("--workers", type=int, default=1, help="stream worker processes (one consumer group)")
    _engine_option(up, "the stream workers' engine: ")
    up.add_argument("--forwarder-processes", type=int, default=0, metavar="N",
                    help="pack the integrations' forwarders into N processes, each integration still with its own "
                         "consumer group, limits and retries (default 0: a process per integration)")
    up.add_argument("--gateway-port", type=int, default=8088)
    up.add_argument("--no-gateway", action="store_true")
    up.add_argument("--console-port", type=int, default=None,
                    help="also run the web console on this port (loopback; users in $EVENTROUTER_HOME/"
                         "console-users.json)")
    up.add_argument("--partitions", type=int, default=6, help="of the topics the processes create")
    up.add_argument("--logs", type=Path, default=None, help="a log per process (default: $EVENTROUTER_HOME/up)")
    up.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    _log_level_option(up)
    up.set_defaults(func=commands.up_command)

    console = sub.add_parser("console", help="the web console: integrations, playbooks with a test panel, "
                                             "revisions, audit log (login required)")
    _bootstrap_option(console)
    console.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    console.add_argument("--port", type=int, default=8788)
    console.add_argument("--users", type=Path, default=None, help="users file (default: $EVENTROUTER_HOME/"
                                                                   "console-users.json)")
    console.add_argument("--secure-cookies", action="store_true", help="behind TLS: cookies only over https")
    _log_level_option(console)
    console.set_defaults(func=commands.console_command)
    console_user = sub.add_parser("console-user", help="add a console user, or set a user's role and password "
                                                       "(the password is read from stdin or asked for); "
                                                       "recorded in the audit log")
    console_user.add_argument("name")
    console_user.add_argument("--role", choices=["viewer", "editor", "admin"], required=True)
    console_user.add_argument("--users", type=Path, default=None)
    _bootstrap_option(console_user)  # the change is written to the audit log on this broker
    console_user.set_defaults(func=commands.console_user_command)

    gateway = sub.add_parser("gateway", help="the Segment-compatible HTTP tracking gateway")
    _bootstrap_option(gateway)
    gateway.add_argument("--config", type=Path, help="config file; its enabled pipelines' writeKeys are accepted")
    gateway.add_argument("--write-key", action="append", help="accept this writeKey (repeatable)")
    gateway.add_argument("--follow-config", action="store_true",
                         help="accept the writeKeys of the newest config revision (`config apply`), live")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8088)
    gateway.add_argument("--processes", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    gateway.add_argument("--ack-timeout", type=float, default=5.0,
                         help="seconds to wait for Kafka's acknowledgement, then 503 + Retry-After (default 5: "
                              "well inside the 10 s HTTP timeout of Segment's Node and Go libraries)")
    gateway.add_argument("--header-timeout", type=float, default=10.0,
                         help="seconds for a request's line and headers to arrive (and idle keep-alive; default 10)")
    gateway.add_argument("--body-timeout", type=float, default=10.0,
                         help="seconds for a request's body to arrive, then 408 and the connection closed "
                              "(default 10)")
    _log_level_option(gateway)
    gateway.set_defaults(func=commands.gateway_command)

    imports = sub.add_parser("import", help="publish Segment-format JSON Lines files (plain or gzip)")
    imports.add_argument("files", nargs="+", type=Path)
    _bootstrap_option(imports)
    imports.add_argument("--write-key", help="set this writeKey on every event")
    imports.add_argument("--rejects", type=Path, default=Path("eventrouter-import-rejects.jsonl"))
    imports.add_argument("--checkpoint", type=Path, help="default: $EVENTROUTER_HOME/import-checkpoint.json")
    imports.add_argument("--quiet", action="store_true", help="no progress line")
    imports.add_argument("--connect-timeout", type=float, default=30.0,
                         help="seconds to wait for a broker to answer before giving up (exit 1)")
    imports.set_defaults(func=commands.import_command)

    config = sub.add_parser("config", help="validate a config file; apply it as a revision; history; rollback")
    config.add_argument("action", choices=["validate", "apply", "history", "rollback"])
    config.add_argument("target", nargs="?", help="the config file (validate, apply) or a revision (rollback)")
    _bootstrap_option(config)
    config.set_defaults(func=commands.config_command)

    worker = sub.add_parser("worker", help="the stream worker: validate, dedupe, run playbooks, route")
    _bootstrap_option(worker)
    worker.add_argument("--config", type=Path, help="apply this file as a revision at start (if it changed)")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics (0: a free port)")
    worker.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics (0.0.0.0 in a container)")
    worker.add_argument("--data-dir", type=Path, default=None, help="default: $EVENTROUTER_HOME/worker")
    worker.add_argument("--batch-size", type=int, default=300, help="most records per batch (streams/worker.py)")
    worker.add_argument("--batch-within-ms", type=_within_ms, default=30,
                        help="how long a batch gathers records when fewer than --batch-size are there")
    worker.add_argument("--dedup-memory-keys", type=_memory_keys, default=100_000,
                        help="messageIds kept in memory (~130 bytes each); older ones go to --data-dir/dedup")
    worker.add_argument("--partitions", type=int, default=6, help="of the raw topic, if the worker creates it")
    worker.add_argument("--replication-factor", type=int, default=1)
    _engine_option(worker)
    worker.add_argument("--store", default="memory://", help="faust engine: the dedup table's store")
    worker.add_argument("--schema-registry", default=None, metavar="URL",
                        help="a Confluent-compatible schema registry, for records framed with its schema ids")
    _log_level_option(worker)
    worker.set_defaults(func=commands.worker_command)

    forward = sub.add_parser("forward", help="deliver integrations' topics to their vendors (one, or many in one "
                                             "process, each with its own consumer group, limits and retries)")
    _bootstrap_option(forward)
    forward.add_argument("integration", nargs="+", help="the integrations' names in the config")
    forward.add_argument("--config", type=Path, help="read the integration from this file (default: the config topic)")
    forward.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics (0: a free port)")
    forward.add_argument("--metrics-host", default="127.0.0.1")
    forward.add_argument("--partitions", type=int, default=6, help="of the retry and dead-letter topics it creates")
    forward.add_argument("--data-dir", type=Path, default=None,
                         help="its crash guard's file (a record it keeps dying on is quarantined); one per process; "
                              "default: $EVENTROUTER_HOME/forward-INTEGRATION (with many integrations: "
                              "DATA_DIR/forward-INTEGRATION each)")
    _log_level_option(forward)
    forward.set_defaults(func=commands.forward_command)

    preview = sub.add_parser("preview", help="what an integration's playbook makes of an event, no Kafka needed")
    preview.add_argument("event", type=Path, help="a JSON file with one event or an array of them; - for stdin")
    preview.add_argument("--config", type=Path, default=Path("eventrouter.yaml"))
    preview.add_argument("--integration", required=True)
    preview.set_defaults(func=commands.preview_command)

    add_ops_commands(sub, _bootstrap_option)
    return parser


def main(argv: list[str] | None = None) -> int:
    from confluent_kafka import KafkaException

    from eventrouter.dev.localkafka import LocalKafkaError
    from schemas import EventRouterError

    args = build_parser().parse_args(argv)
    if args.kafka_config is not None:
        from schemas.runtime.kafka import KAFKA_CONFIG_ENV

        os.environ[KAFKA_CONFIG_ENV] = str(args.kafka_config.resolve())  # inherited by the processes it starts
    configure_logging(args)
    try:
        code: int = args.func(args)
    except (LocalKafkaError, EventRouterError) as exc:
        from schemas.secrets import scrub

        print(f"eventrouter: {scrub(str(exc))}", file=sys.stderr)
        return 1
    except KafkaException as exc:  # e.g. the broker went away between the wait for it and a metadata call
        from schemas.secrets import scrub

        error = exc.args[0] if exc.args else exc
        print(scrub(f"eventrouter: Kafka at {getattr(args, 'bootstrap_servers', '?')}: "
                    f"{getattr(error, 'str', lambda: error)()}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def configure_logging(args: argparse.Namespace) -> None:
    """The one place the log level is set: `--log-level` of a long-running command (inherited by the
    processes it starts), else INFO with -v, else WARNING (the short commands print their own results)."""
    level = getattr(args, "log_level", None)
    if level is not None:
        os.environ[LOG_LEVEL_ENV] = level
    else:
        level = "INFO" if args.verbose else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from schemas.secrets import install_log_scrubbing

    install_log_scrubbing()  # no line this process writes carries a secret it resolved
