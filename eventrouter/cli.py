"""The `eventrouter` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from eventrouter import paths
from eventrouter.ops.commands import add_commands as add_ops_commands


def _kafka(args: argparse.Namespace) -> int:
    from eventrouter.dev.localkafka import LocalKafka

    kafka = LocalKafka(args.state_dir or paths.kafka_state_dir(), paths.cache_dir(), version=args.kafka_version)
    if args.action == "start":
        users = dict(u.split(":", 1) for u in args.scram or [] if ":" in u)
        if len(users) != len(args.scram or []):
            print("eventrouter: --scram takes USER:PASSWORD", file=sys.stderr)
            return 2
        status = kafka.start(nodes=args.nodes, port=args.port, scram_users=users or None, tls=args.tls)
        for node in status.nodes:
            print(f"node {node.node_id}: pid {node.pid} at {node.bootstrap}", file=sys.stderr)
        if users:
            user = next(iter(users))
            client = kafka.state_dir / "client.properties"
            client.write_text(kafka.client_properties(user, "${EVENTROUTER_KAFKA_PASSWORD}"))
            print(f"SASL/SCRAM{' over TLS' if args.tls else ''}: clients need --kafka-config {client} and "
                  f"EVENTROUTER_KAFKA_PASSWORD set to {user}'s password", file=sys.stderr)
        print(status.bootstrap)
        return 0
    if args.action == "stop":
        print("stopped" if kafka.stop() else "not running")
        return 0
    status = kafka.status()
    if not status.running:
        print("not running")
        return 3
    print(f"running: kafka {status.kafka_version} at {status.bootstrap}")
    for node in status.nodes:
        state = f"pid {node.pid}, rss {node.rss_mib:.0f} MiB" if node.running else "stopped"
        print(f"  node {node.node_id} {node.bootstrap}: {state}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from eventrouter.demo import run_demo

    return run_demo(paths.home() / "demo-kafka", paths.cache_dir(), count=args.events, keep=args.keep,
                    keep_running=args.keep_running)


def _up(args: argparse.Namespace) -> int:
    from eventrouter.checks import load_checked
    from eventrouter.stack import Stack, run_up
    from schemas import Topics
    from schemas.runtime.kafka import wait_for_brokers
    from schemas.runtime.revisions import ConfigStore

    load_checked(args.config)  # every problem at once (the forwarders' too), before anything starts
    wait_for_brokers(args.bootstrap_servers, meanwhile="waiting for it before starting the stack")
    topics = Topics(args.topic_prefix)
    revision, created = ConfigStore(args.bootstrap_servers, topics).apply(args.config)
    print(f"config {args.config}: {'applied as' if created else 'already'} revision {revision.number}")
    folder = args.logs or paths.home() / "up"
    stack = Stack(args.bootstrap_servers, topics, args.config, folder, workers=args.workers,
                  gateway_port=None if args.no_gateway else args.gateway_port, partitions=args.partitions)
    print(f"logs in {folder}")
    return run_up(stack, every_s=args.progress_every)


def _gateway(args: argparse.Namespace) -> int:
    from producers.gateway import GatewaySettings, serve, write_keys_from_config
    from schemas import Topics
    from schemas.runtime.kafka_watch import WATCH

    keys = set(args.write_key or ())
    if args.config:
        keys |= write_keys_from_config(args.config)
    if not keys and not args.follow_config:
        print("eventrouter: the gateway needs --follow-config, --config with pipelines, or --write-key",
              file=sys.stderr)
        return 2
    settings = GatewaySettings(args.bootstrap_servers, frozenset(keys), Topics(args.topic_prefix),
                               ack_timeout=args.ack_timeout, follow_config=args.follow_config,
                               header_timeout=args.header_timeout, body_timeout=args.body_timeout)
    WATCH.meanwhile = "the gateway answers 503 with Retry-After until Kafka acknowledges again"
    return serve(settings, args.host, args.port, args.processes)


def _import(args: argparse.Namespace) -> int:
    from producers.importer import Importer
    from producers.publisher import Publisher
    from schemas import Topics
    from schemas.runtime.kafka import BrokerUnreachable, wait_for_brokers

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"eventrouter: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        wait_for_brokers(args.bootstrap_servers, args.connect_timeout,
                         meanwhile=f"the import waits up to {args.connect_timeout:.0f} s for it")
    except BrokerUnreachable as exc:
        print(f"eventrouter: {exc}; nothing imported", file=sys.stderr)
        return 1
    publisher = Publisher(args.bootstrap_servers, Topics(args.topic_prefix).raw, name="eventrouter-import")
    importer = Importer(publisher, write_key=args.write_key, rejects=args.rejects,
                        checkpoint=args.checkpoint or paths.home() / "import-checkpoint.json",
                        progress=None if args.quiet else sys.stderr)
    summary = importer.run(args.files)
    publisher.close()
    print(summary.table())
    if summary.rejected:
        print(f"rejected lines and their reasons: {args.rejects}")
    if summary.interrupted:
        print("interrupted: run the same command again to resume")
        return 130
    return 1 if summary.failed else 0


def _config(args: argparse.Namespace) -> int:
    from eventrouter.checks import load_checked, unset_references
    from schemas import Topics
    from schemas.runtime.revisions import ConfigStore
    from schemas.secrets import masked

    if args.action == "validate":
        config = load_checked(args.target or "eventrouter.yaml")  # ConfigurationError lists every problem: exit 1
        print(f"{args.target}: valid: {len(config.pipelines)} pipelines, {len(config.integrations)} integrations")
        for integration in config.integrations:
            unset = unset_references(integration.connection, os.environ)
            print(f"  {integration.name} ({integration.kind}): connection {masked(integration.connection)}"
                  + (f"; not set here: {', '.join(unset)}" if unset else ""))
        return 0
    store = ConfigStore(args.bootstrap_servers, Topics(args.topic_prefix))
    if args.action == "apply":
        load_checked(args.target or "eventrouter.yaml")
        revision, created = store.apply(args.target or "eventrouter.yaml")
        print(f"{'applied' if created else 'unchanged: already'} revision {revision.number} "
              f"(sha256 {revision.sha256[:12]}) to {store.topic}")
        return 0
    if args.action == "history":
        revisions = store.history()
        if not revisions:
            print(f"no revisions in {store.topic}")
        for revision in revisions:
            print(revision.summary())
        return 0
    if not args.target or not args.target.isdigit():
        print("eventrouter: config rollback needs a revision number (see `eventrouter config history`)",
              file=sys.stderr)
        return 2
    revision = store.rollback(int(args.target))
    print(f"rolled back: revision {revision.number} is revision {args.target}'s config")
    return 0


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


def _worker(args: argparse.Namespace) -> int:
    from eventrouter.checks import load_checked
    from schemas import Topics
    from schemas.runtime.kafka import wait_for_brokers
    from streams.app import run_worker
    from streams.worker import WorkerSettings

    if args.config is not None:
        load_checked(args.config)  # a bad file is refused at once, broker or not, as `config apply` would
    wait_for_brokers(args.bootstrap_servers, meanwhile="the worker waits for it")
    settings = WorkerSettings(
        args.bootstrap_servers, Topics(args.topic_prefix), data_dir=args.data_dir or paths.home() / "worker",
        config_file=args.config, metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        batch_size=args.batch_size, batch_within_s=args.batch_within_ms / 1000,
        dedup_memory_keys=args.dedup_memory_keys,
        partitions=args.partitions, replication_factor=args.replication_factor, store=args.store, engine=args.engine,
        schema_registry=args.schema_registry,
        log_level=args.log_level)
    return run_worker(settings)


def _forward(args: argparse.Namespace) -> int:
    from forwarders.app import forward
    from schemas import Topics
    return forward(args.bootstrap_servers, Topics(args.topic_prefix), args.integration, config_file=args.config,
                   metrics_port=args.metrics_port, metrics_host=args.metrics_host, partitions=args.partitions,
                   data_dir=args.data_dir or paths.home() / f"forward-{args.integration}")


def _preview(args: argparse.Namespace) -> int:
    import orjson

    from schemas.config import load_config
    from streams.preview import preview

    config = load_config(args.config)
    if args.integration not in {i.name for i in config.integrations}:
        print(f"eventrouter: no integration {args.integration!r} in {args.config}", file=sys.stderr)
        return 2
    try:
        document = orjson.loads(sys.stdin.buffer.read() if str(args.event) == "-" else args.event.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"eventrouter: cannot read {args.event}: {exc}", file=sys.stderr)
        return 2
    events = document if isinstance(document, list) else [document]
    if not all(isinstance(e, dict) for e in events):
        print("eventrouter: an event file holds a JSON object or an array of them", file=sys.stderr)
        return 2
    for event in events:
        sys.stdout.write(orjson.dumps(preview(config, args.integration, event),
                                      option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    return 0


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
    kafka.set_defaults(func=_kafka)

    demo = sub.add_parser("demo", help="the main job: the pipeline end to end on an embedded broker")
    demo.add_argument("--events", type=int, default=600)
    demo.add_argument("--keep", action="store_true", help="leave the broker running afterwards")
    demo.add_argument("--keep-running", action="store_true",
                      help="after the summary, keep the whole stack running until Ctrl-C")
    _log_level_option(demo)
    demo.set_defaults(func=_demo)

    up = sub.add_parser("up", help="run the stack in the foreground against a broker: gateway, workers, "
                                   "a forwarder per integration")
    up.add_argument("config", type=Path, help="the config file (applied as a revision if it changed)")
    _bootstrap_option(up)
    up.add_argument("--workers", type=int, default=1, help="stream worker processes (one consumer group)")
    up.add_argument("--gateway-port", type=int, default=8088)
    up.add_argument("--no-gateway", action="store_true")
    up.add_argument("--partitions", type=int, default=6, help="of the topics the processes create")
    up.add_argument("--logs", type=Path, default=None, help="a log per process (default: $EVENTROUTER_HOME/up)")
    up.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    _log_level_option(up)
    up.set_defaults(func=_up)

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
    gateway.set_defaults(func=_gateway)

    imports = sub.add_parser("import", help="publish Segment-format JSON Lines files (plain or gzip)")
    imports.add_argument("files", nargs="+", type=Path)
    _bootstrap_option(imports)
    imports.add_argument("--write-key", help="set this writeKey on every event")
    imports.add_argument("--rejects", type=Path, default=Path("eventrouter-import-rejects.jsonl"))
    imports.add_argument("--checkpoint", type=Path, help="default: $EVENTROUTER_HOME/import-checkpoint.json")
    imports.add_argument("--quiet", action="store_true", help="no progress line")
    imports.add_argument("--connect-timeout", type=float, default=30.0,
                         help="seconds to wait for a broker to answer before giving up (exit 1)")
    imports.set_defaults(func=_import)

    config = sub.add_parser("config", help="validate a config file; apply it as a revision; history; rollback")
    config.add_argument("action", choices=["validate", "apply", "history", "rollback"])
    config.add_argument("target", nargs="?", help="the config file (validate, apply) or a revision (rollback)")
    _bootstrap_option(config)
    config.set_defaults(func=_config)

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
    worker.add_argument("--engine", choices=["kafka", "faust"], default="kafka",
                        help="kafka: confluent-kafka consumer group (default); faust: faust-streaming, the alternative "
                             "(docs/decisions.md)")
    worker.add_argument("--store", default="memory://", help="faust engine: the dedup table's store")
    worker.add_argument("--schema-registry", default=None, metavar="URL",
                        help="a Confluent-compatible schema registry, for records framed with its schema ids")
    _log_level_option(worker)
    worker.set_defaults(func=_worker)

    forward = sub.add_parser("forward", help="deliver one integration's topic to its vendor")
    _bootstrap_option(forward)
    forward.add_argument("integration", help="the integration's name in the config")
    forward.add_argument("--config", type=Path, help="read the integration from this file (default: the config topic)")
    forward.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics (0: a free port)")
    forward.add_argument("--metrics-host", default="127.0.0.1")
    forward.add_argument("--partitions", type=int, default=6, help="of the retry and dead-letter topics it creates")
    forward.add_argument("--data-dir", type=Path, default=None,
                         help="its crash guard's file (a record it keeps dying on is quarantined); one per process; "
                              "default: $EVENTROUTER_HOME/forward-INTEGRATION")
    _log_level_option(forward)
    forward.set_defaults(func=_forward)

    preview = sub.add_parser("preview", help="what an integration's playbook makes of an event, no Kafka needed")
    preview.add_argument("event", type=Path, help="a JSON file with one event or an array of them; - for stdin")
    preview.add_argument("--config", type=Path, default=Path("eventrouter.yaml"))
    preview.add_argument("--integration", required=True)
    preview.set_defaults(func=_preview)

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
        error = exc.args[0] if exc.args else exc
        print(f"eventrouter: Kafka at {getattr(args, 'bootstrap_servers', '?')}: "
              f"{getattr(error, 'str', lambda: error)()}", file=sys.stderr)
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
