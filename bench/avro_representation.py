"""Which Avro representation for free-form properties/traits/context? Measure, side by side.

A. recursive Avro `Json` type (record wrapping a union of null/boolean/long/double/string/array/map)
B. ours: typed well-known context fields + JSON-text remainder; properties/traits as JSON text
C. our envelope with the whole context as JSON text (same top-level typed fields as B)
Reference: orjson of the whole message (no Avro).

Run: .venv/bin/python -m bench.avro_representation   (writes bench/results/avro_representation.json)
"""

from __future__ import annotations

import copy
import io
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import EventCodec, load_schema
from schemas.envelope import from_record, to_record

JSON_TYPE: dict[str, Any] = {
    "type": "record", "name": "Json",
    "fields": [{"name": "v", "type": [
        "null", "boolean", "long", "double", "string",
        {"type": "array", "items": "Json"}, {"type": "map", "values": "Json"}]}],
}


def sample_event(rng: random.Random) -> dict[str, Any]:
    """A ~1 KB Segment track call with nested properties, like an e-commerce backend sends."""
    products = [{"product_id": f"sku-{rng.randrange(10**6)}", "name": "Widget \u00e9\u00e8 \U0001F600",
                 "price": round(rng.uniform(1, 300), 2), "quantity": rng.randrange(1, 5),
                 "category": "tools", "in_stock": rng.random() > 0.5} for _ in range(3)]
    return {
        "messageId": f"{rng.getrandbits(128):032x}", "type": "track", "userId": f"user-{rng.randrange(10**6)}",
        "anonymousId": f"{rng.getrandbits(64):016x}", "event": "Order Completed",
        "originalTimestamp": "2026-11-26T10:00:00.123Z", "sentAt": "2026-11-26T10:00:00.200Z",
        "properties": {"order_id": f"o-{rng.randrange(10**8)}", "revenue": 123.45, "currency": "EUR",
                       "coupon": None, "products": products, "tax": 10, "shipping": 4.99},
        "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "fr-FR",
                    "library": {"name": "eventrouter-python", "version": "0.1.0"},
                    "page": {"url": "https://shop.example/checkout", "path": "/checkout", "title": "Checkout"},
                    "campaign": {"source": "newsletter", "medium": "email", "name": "black-friday"},
                    "consent": {"categoryPreferences": {"analytics": True, "advertising": False}},
                    "traits": {"email": "a@example.com"}},
        "integrations": {"All": True, "Mixpanel": False},
    }


def to_json_type(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"v": ("map", {k: to_json_type(v) for k, v in value.items()})}
    if isinstance(value, list):
        return {"v": ("array", [to_json_type(v) for v in value])}
    if isinstance(value, bool):
        return {"v": ("boolean", value)}
    if isinstance(value, int):
        return {"v": ("long", value)}
    if isinstance(value, float):
        return {"v": ("double", value)}
    return {"v": value}


def from_json_type(node: dict[str, Any]) -> Any:
    v = node["v"]
    if isinstance(v, dict):
        return {k: from_json_type(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json_type(x) for x in v]
    return v


def recursive_schema() -> dict[str, Any]:
    s = {"type": "record", "name": "EventRec", "fields": [
        {"name": "messageId", "type": "string"}, {"name": "type", "type": "string"},
        {"name": "userId", "type": ["null", "string"]}, {"name": "anonymousId", "type": ["null", "string"]},
        {"name": "event", "type": ["null", "string"]}, {"name": "originalTimestamp", "type": ["null", "string"]},
        {"name": "sentAt", "type": ["null", "string"]},
        {"name": "properties", "type": JSON_TYPE}, {"name": "context", "type": "Json"},
        {"name": "integrations", "type": "Json"}]}
    return s


def all_json_schema() -> dict[str, Any]:
    """Our event schema, with `context` as JSON text instead of a record: same footing as B."""
    schema = load_schema("event")
    for field in schema["fields"]:
        if field["name"] == "context":
            field["type"] = ["null", "string"]
    return schema


def timeit(fn: Any, items: list[Any], rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e6


def main(n: int = 5000) -> dict[str, Any]:
    rng = random.Random(7)
    events = [sample_event(rng) for _ in range(n)]
    results: dict[str, Any] = {}

    # A: recursive
    rs = parse_schema(recursive_schema())
    free = ("properties", "context", "integrations")

    def enc_a(m: dict[str, Any]) -> bytes:
        rec = {k: (to_json_type(v) if k in free else v) for k, v in m.items()}
        buf = io.BytesIO()
        schemaless_writer(buf, rs, rec)
        return buf.getvalue()

    def dec_a(b: bytes) -> dict[str, Any]:
        rec = schemaless_reader(io.BytesIO(b), rs, None)
        assert isinstance(rec, dict)
        return {k: (from_json_type(v) if k in free else v) for k, v in rec.items() if v is not None}

    # B: ours
    codec = EventCodec()
    # C: all JSON
    js = parse_schema(all_json_schema())

    def enc_c(m: dict[str, Any]) -> bytes:
        rec = to_record({k: v for k, v in m.items() if k != "context"})
        if "context" in m:
            rec["context"] = orjson.dumps(m["context"]).decode()
        buf = io.BytesIO()
        schemaless_writer(buf, js, rec)
        return buf.getvalue()

    def dec_c(b: bytes) -> dict[str, Any]:
        rec = schemaless_reader(io.BytesIO(b), js, None)
        assert isinstance(rec, dict)
        context = rec.pop("context")
        out = from_record(rec)
        if context is not None:
            out["context"] = orjson.loads(context)
        return out

    variants = {
        "A_recursive_avro": (enc_a, dec_a),
        "B_typed_context_plus_json": (codec.encode, codec.decode),
        "C_context_as_json_text": (enc_c, dec_c),
        "ref_orjson_whole_message": (orjson.dumps, orjson.loads),
    }
    for name, (enc, dec) in variants.items():
        blobs = [enc(e) for e in events]
        assert all(dec(b) == e for b, e in zip(blobs[:200], events[:200], strict=True)), name
        results[name] = {
            "encode_us": round(timeit(enc, events), 2),
            "decode_us": round(timeit(dec, blobs), 2),
            "bytes": round(sum(len(b) for b in blobs) / n, 1),
        }
    results["_event_json_bytes"] = round(sum(len(orjson.dumps(e)) for e in events) / n, 1)
    results["_machine"] = f"{platform.machine()} {platform.python_version()}"
    # split cost alone (envelope mapping without Avro)
    results["_B_envelope_mapping_only_us"] = {
        "to_record": round(timeit(to_record, events), 2),
        "from_record": round(timeit(from_record, [to_record(copy.deepcopy(e)) for e in events]), 2),
    }
    return results


if __name__ == "__main__":
    out = main()
    path = Path(__file__).parent / "results" / "avro_representation.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
