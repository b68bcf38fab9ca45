"""The operator's commands: `replay deliver | reroute`, `deadletters list | show | reinject`, `status`.
Each reads the newest config revision from the config topic (what the workers run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

Option = Callable[[argparse.ArgumentParser], None]


def add_commands(sub: Any, bootstrap_option: Option) -> None:
    replay = sub.add_parser("replay", help="deliver a range of an integration's topic again, or re-route raw "
                                           "events into one integration")
    replay.add_argument("action", choices=["deliver", "reroute"],
                        help="deliver: the integration's topic to its vendor again; reroute: raw events "
                             "through the current playbook into the integration's topic")
    replay.add_argument("integration")
    bootstrap_option(replay)
    _range_options(replay)
    replay.add_argument("--rate", type=float, default=None, help="deliver: requests per second (default: "
                                                                 "the integration's own limit, if any)")
    replay.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    replay.set_defaults(func=_replay)

    letters = sub.add_parser("deadletters", help="list, show and re-inject dead letters")
    letters.add_argument("action", choices=["list", "show", "reinject"])
    letters.add_argument("where", nargs="?", default="invalid",
                         help="an integration's name, or `invalid` (the worker's dead letters; the default)")
    letters.add_argument("at", nargs="?", help="show: PARTITION:OFFSET")
    bootstrap_option(letters)
    _range_options(letters)
    letters.add_argument("--reason", help="only reasons starting with this (e.g. vendor.status_4, playbook)")
    letters.add_argument("--integration", help="invalid: only the dead letters of this integration's playbook")
    letters.add_argument("--limit", type=int, default=50, help="list: at most this many lines")
    letters.add_argument("--dry-run", action="store_true", help="reinject: count, write nothing")
    letters.set_defaults(func=_deadletters)

    status = sub.add_parser("status", help="config revision, lag per integration, dead letters")
    bootstrap_option(status)
    status.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the broker before saying it is unreachable (exit 1)")
    status.add_argument("--logs", type=Path, default=None,
                        help="the logs folder of a running `eventrouter up` (default: $EVENTROUTER_HOME/up), "
                             "for the processes' counts")
    status.set_defaults(func=_status)


def _range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="written at or after: ISO-8601, epoch ms, or ago (90m, 2h, 3d)")
    parser.add_argument("--until", help="written before (same forms; default: now)")
    parser.add_argument("--from-offset", type=int, help="each partition from this offset")
    parser.add_argument("--to-offset", type=int, help="each partition up to (not including) this offset")


def _span(args: argparse.Namespace, topic: str) -> Any:
    from eventrouter.ops.ranges import find_span, parse_when

    return find_span(args.bootstrap_servers, topic,
                     since_ms=parse_when(args.since) if args.since else None,
                     until_ms=parse_when(args.until) if args.until else None,
                     from_offset=args.from_offset, to_offset=args.to_offset)


def _current(args: argparse.Namespace) -> Any:
    """(topics, revision, config) of the newest revision."""
    from schemas import Topics
    from schemas.errors import ConfigurationError
    from schemas.runtime.revisions import ConfigStore

    topics = Topics(args.topic_prefix)
    revision = ConfigStore(args.bootstrap_servers, topics).latest()
    if revision is None:
        raise ConfigurationError(f"no config revision in {topics.config}: run `eventrouter config apply` first")
    return topics, revision, revision.config()


def _replay(args: argparse.Namespace) -> int:
    from forwarders.app import find_integration

    topics, revision, config = _current(args)
    integration = find_integration(config, args.integration)
    if args.action == "deliver":
        from eventrouter.ops.replay import ReplayForwarder, plan

        span = _span(args, topics.integration(integration.name))
        print(f"replay of {integration.name} ({span.topic}), config revision {revision.number}")
        print("\n".join(plan(args.bootstrap_servers, span, integration).lines()))
        if args.dry_run:
            print("dry run: nothing sent")
            return 0
        forwarder = ReplayForwarder(args.bootstrap_servers, topics, integration, span, rate_per_s=args.rate)
        taken = forwarder.replay()
        print(f"replayed {taken} records (receipts on {topics.receipts}, dead letters on {forwarder.dlq})")
        return 0
    from eventrouter.ops.reroute import reroute
    from schemas.runtime.kafka import ensure_topics
    from streams.router import Router

    router = Router(config, revision.number, topics)
    ensure_topics(args.bootstrap_servers, [topics.integration(integration.name), topics.invalid])
    span = _span(args, topics.raw)
    print(f"re-route of {span.count} raw records into {integration.name}, config revision {revision.number}"
          + (" (dry run: nothing written)" if args.dry_run else ""))
    report = reroute(args.bootstrap_servers, router, integration.name, span, dry_run=args.dry_run)
    print("\n".join(report.lines()))
    return 0


def _deadletters(args: argparse.Namespace) -> int:
    import orjson

    from eventrouter.ops.deadletters import describe, letters, reinject
    from streams.router import Router

    topics, revision, config = _current(args)
    topic = topics.invalid if args.where == "invalid" else topics.dead_letters(args.where)
    if args.action == "show":
        if not args.at or ":" not in args.at:
            print("eventrouter: deadletters show WHERE PARTITION:OFFSET (as `deadletters list` prints)",
                  file=sys.stderr)
            return 2
        from eventrouter.ops.ranges import Span

        partition, offset = (int(x) for x in args.at.split(":", 1))
        found = list(letters(args.bootstrap_servers, Span(topic, {partition: offset}, {partition: offset + 1})))
        if not found:
            print(f"eventrouter: no dead letter at {topic} {args.at}", file=sys.stderr)
            return 1
        print(orjson.dumps(describe(found[0]), option=orjson.OPT_INDENT_2, default=str).decode())
        return 0
    chosen = list(letters(args.bootstrap_servers, _span(args, topic), reason=args.reason,
                          integration=args.integration))
    if args.action == "list":
        reasons: dict[str, int] = {}
        for letter in chosen:
            reasons[letter.record["reason"]] = reasons.get(letter.record["reason"], 0) + 1
        for letter in chosen[:args.limit]:
            print(letter.line())
        if len(chosen) > args.limit:
            print(f"... {len(chosen) - args.limit} more (--limit)")
        print(f"{len(chosen)} dead letters in {topic}" + "".join(f"; {r}: {n}" for r, n in sorted(reasons.items())))
        return 0
    report = reinject(args.bootstrap_servers, topics, Router(config, revision.number, topics), chosen,
                      dry_run=args.dry_run)
    print(f"re-injection from {topic}, config revision {revision.number}" + (" (dry run)" if args.dry_run else ""))
    print("\n".join(report.lines()))
    return 0


def _status(args: argparse.Namespace) -> int:
    from eventrouter import paths
    from eventrouter.progress import read_snapshot
    from eventrouter.status import BrokerUnreachable, process_lines, status
    from schemas import Topics

    folder = args.logs or paths.home() / "up"
    snapshot = read_snapshot(folder, args.topic_prefix)
    try:
        found = status(args.bootstrap_servers, Topics(args.topic_prefix), timeout=args.timeout)
    except BrokerUnreachable:
        if snapshot is not None:
            print("\n".join(process_lines(snapshot, folder)))
        raise
    print("\n".join([*found.lines(), *process_lines(snapshot, folder)]))
    return 0
