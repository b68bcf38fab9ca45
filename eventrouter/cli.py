"""The `eventrouter` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from eventrouter import paths

# Commands the pipeline grows into; named here so docker-compose.yml and the README can refer
# to them. Each says plainly that it is not in this version yet.
_PLANNED = {
    "gateway": "the Segment-compatible HTTP tracking gateway (issue #3)",
    "import": "bulk import of Segment JSON Lines files (issue #3)",
    "worker": "the Faust stream worker (issue #4)",
    "config": "config validate / apply / history / rollback (issue #4)",
    "forward": "the forwarder for one integration (issue #5)",
}


def _kafka(args: argparse.Namespace) -> int:
    from eventrouter.localkafka import LocalKafka

    kafka = LocalKafka(args.state_dir or paths.kafka_state_dir(), paths.cache_dir(), version=args.kafka_version)
    if args.action == "start":
        status = kafka.start(nodes=args.nodes, port=args.port)
        for node in status.nodes:
            print(f"node {node.node_id}: pid {node.pid} at {node.bootstrap}", file=sys.stderr)
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

    return run_demo(paths.home() / "demo-kafka", paths.cache_dir(), count=args.events, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    from eventrouter.localkafka import DEFAULT_KAFKA_VERSION

    parser = argparse.ArgumentParser(prog="eventrouter", description="Kafka-native server-side event router")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="run a real Apache Kafka (KRaft) broker locally, no Docker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--nodes", type=int, choices=[1, 3], default=1, help="1 broker, or a 3-broker cluster")
    kafka.add_argument("--port", type=int, default=None, help="client port of node 1 (default: a free port)")
    kafka.add_argument("--state-dir", type=Path, default=None, help="default: $EVENTROUTER_HOME/kafka")
    kafka.add_argument("--kafka-version", default=DEFAULT_KAFKA_VERSION)
    kafka.set_defaults(func=_kafka)

    demo = sub.add_parser("demo", help="the main job: the pipeline end to end on an embedded broker")
    demo.add_argument("--events", type=int, default=600)
    demo.add_argument("--keep", action="store_true", help="leave the broker running afterwards")
    demo.set_defaults(func=_demo)

    for name, what in _PLANNED.items():
        planned = sub.add_parser(name, help=f"{what}: not in this version yet")
        planned.add_argument("rest", nargs=argparse.REMAINDER)
        planned.set_defaults(func=lambda _args, what=what: _not_yet(what))
    return parser


def _not_yet(what: str) -> int:
    print(f"eventrouter: {what} is not in this version yet", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from eventrouter.localkafka import LocalKafkaError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        code: int = args.func(args)
    except LocalKafkaError as exc:
        print(f"eventrouter: {exc}", file=sys.stderr)
        return 1
    return code
