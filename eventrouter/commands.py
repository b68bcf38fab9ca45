"""What each of the `eventrouter` commands does (eventrouter/cli.py parses them): the local broker, the demo,
`up`, the gateway, a file import, config, a stream worker, a forwarder, a preview."""

from __future__ import annotations

import argparse
import os
import sys

from eventrouter import paths


def kafka_command(args: argparse.Namespace) -> int:
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


def demo_command(args: argparse.Namespace) -> int:
    from eventrouter.demo import run_demo

    return run_demo(paths.home() / "demo-kafka", paths.cache_dir(), count=args.events, keep=args.keep,
                    keep_running=args.keep_running, engine=args.engine, kinds=args.vendors)


def vendors_command(args: argparse.Namespace) -> int:
    from eventrouter.vendor_pages import table
    from forwarders.facts import facts

    if args.kind:
        from eventrouter.vendor_pages import page

        print(page(facts(args.kind)), end="")
    else:
        print(table(), end="")
    return 0


def up_command(args: argparse.Namespace) -> int:
    from eventrouter.checks import load_checked
    from eventrouter.stack import Stack
    from eventrouter.supervise import run_up
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
                  gateway_port=None if args.no_gateway else args.gateway_port, partitions=args.partitions,
                  console_port=args.console_port, console_users=paths.home() / "console-users.json",
                  engine=args.engine, forwarder_processes=max(0, args.forwarder_processes))
    print(f"logs in {folder}")
    return run_up(stack, every_s=args.progress_every)


def console_command(args: argparse.Namespace) -> int:
    from eventrouter.console.serve import build, serve
    from schemas import Topics

    console, store = build(args.bootstrap_servers, Topics(args.topic_prefix),
                           args.users or paths.home() / "console-users.json", secure_cookies=args.secure_cookies)
    serve(console, store, args.host, args.port)
    return 0


def console_user_command(args: argparse.Namespace) -> int:
    import getpass
    import socket

    from eventrouter.console import audit
    from eventrouter.console.store import append_audit
    from eventrouter.console.users import add_user, load_users
    from schemas import Topics
    from schemas.errors import ConfigurationError, RetryableError

    password = getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    path = args.users or paths.home() / "console-users.json"
    existed = args.name in load_users(path)
    user = add_user(path, args.name, args.role, password.rstrip("\n"))
    print(f"console user {user.name}: {user.role}")
    what = f"{'given a new password and the role' if existed else 'made, role'} {user.role} (eventrouter console-user)"
    entry = audit.record(f"{getpass.getuser()}@{socket.gethostname()}", audit.USER, f"user {user.name}",
                         f"{user.name}: {what}")
    try:
        append_audit(args.bootstrap_servers, Topics(args.topic_prefix), entry)
    except (RetryableError, ConfigurationError) as exc:
        print(f"eventrouter: the user is saved, but the audit log could not be written ({exc}); the change is "
              "not in the console's audit log", file=sys.stderr)
        return 1
    return 0


def gateway_command(args: argparse.Namespace) -> int:
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


def import_command(args: argparse.Namespace) -> int:
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


def config_command(args: argparse.Namespace) -> int:
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


def worker_command(args: argparse.Namespace) -> int:
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


def forward_command(args: argparse.Namespace) -> int:
    from forwarders.app import forward
    from schemas import Topics
    names: list[str] = args.integration
    if len(names) == 1:
        dirs = {names[0]: args.data_dir or paths.home() / f"forward-{names[0]}"}
    else:
        dirs = {name: (args.data_dir or paths.home()) / f"forward-{name}" for name in names}
    return forward(args.bootstrap_servers, Topics(args.topic_prefix), names, config_file=args.config,
                   metrics_port=args.metrics_port, metrics_host=args.metrics_host, partitions=args.partitions,
                   data_dirs=dirs)


def preview_command(args: argparse.Namespace) -> int:
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
