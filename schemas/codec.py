"""Avro codec: schemas parsed once, schemaless, self-describing framing.

Encoding uses a writer generated for the schema (schemas/compiled.py, byte-identical to fastavro's,
four times faster); decoding a record written with the current schema uses a generated reader too
(schemas/compiled_reader.py), and fastavro resolves records written with older or newer schemas.

Framing (both recognised on decode):
- Avro single-object encoding (default, no registry needed): C3 01 + 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema's parsing canonical form + Avro binary.
- Confluent wire format (when a schema registry is configured): 00 + 4-byte big-endian
  schema id + Avro binary.
A record written with an older (or newer) known schema is resolved to the reader schema.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.compiled import compile_writer
from schemas.compiled_reader import compile_reader
from schemas.errors import DecodeError, EncodeError
from schemas.registry import SchemaRegistryClient

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema by file stem: `load_schema("event")` or `load_schema("history/event.v1")`."""
    text = resources.files("schemas").joinpath(f"avro/{name}.avsc").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def history(name: str) -> list[dict[str, Any]]:
    """Every earlier released version of schema `name` kept in schemas/avro/history/."""
    folder = resources.files("schemas").joinpath("avro/history")
    return [json.loads(f.read_text()) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.startswith(f"{name}.v") and f.name.endswith(".avsc")]


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8 bytes of the CRC-64-AVRO fingerprint, in the order single-object encoding writes them."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(dict(schema)), "CRC-64-AVRO"))


class AvroCodec:
    """Encodes and decodes one record type of the contract.

    `writers` are other versions of the schema this decoder accepts (older releases, or a newer
    producer's schema it has been told about); records in them are resolved to `schema`.
    """

    def __init__(self, schema: Mapping[str, Any], writers: Iterable[Mapping[str, Any]] = (),
                 registry: SchemaRegistryClient | None = None, subject: str | None = None,
                 *, omit_null: bool = False, fields: Iterable[str] | None = None) -> None:
        """`omit_null`: decoded records may leave out fields whose value is null (a reader that drops
        nulls anyway, such as `from_record`, saves the work). `fields`: decoded records need hold only
        these (a reader of a few fields of a large record); records of other schema versions, which
        fastavro resolves, hold every field."""
        self.schema = dict(schema)
        self._parsed = parse_schema(self.schema)
        self._write = compile_writer(self.schema)
        self._fast_read = compile_reader(self.schema, omit_null, fields)
        self.fingerprint = schema_fingerprint(self.schema)
        self._prefix = SINGLE_OBJECT_MAGIC + self.fingerprint
        self._writers: dict[bytes, Any] = {self.fingerprint: self._parsed}
        for writer in writers:
            self._writers.setdefault(schema_fingerprint(writer), parse_schema(dict(writer)))
        self._registry = registry
        self._subject = subject or f"{self.schema.get('namespace', '')}.{self.schema['name']}".lstrip(".")
        self._registry_writers: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"AvroCodec({self._subject}, fingerprint={self.fingerprint.hex()})"

    def framing(self) -> bytes:
        """The bytes that precede every encoded record: single-object header, or Confluent's with the
        registered schema id (registers the schema on first use)."""
        if self._registry is not None:
            schema_id = self._registry.register(self._subject, self.schema)
            return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        return self._prefix

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Frame and encode `record`; raises EncodeError naming what does not fit the schema."""
        out = bytearray(self.framing())
        try:
            self._write(record, out)
        except EncodeError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EncodeError("encode.schema", f"{self._subject}: {type(exc).__name__}: {exc}") from exc
        return bytes(out)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode framed bytes into a record dict, or raise DecodeError with a reason code."""
        if type(data) is bytes and data[:10] == self._prefix:  # the usual record (one call less per record)
            return self._read(data, 10, self._parsed)[0]
        return self.read(data)[0]

    def read(self, data: bytes | None) -> tuple[dict[str, Any], bool]:
        """`decode`, and whether the generated reader made the record (written with this very schema:
        with `omit_null` its nulls are left out) rather than fastavro (another version, resolved)."""
        if type(data) is bytes and data[:10] == self._prefix:  # the usual record: this schema, no registry
            return self._read(data, 10, self._parsed)
        if not data:
            raise DecodeError("decode.empty", "empty value")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("decode.truncated", f"single-object header needs 10 bytes, got {len(data)}")
            fp = bytes(data[2:10])
            writer = self._writers.get(fp)
            if writer is None:
                raise DecodeError("decode.unknown_schema", f"unknown schema fingerprint {fp.hex()}")
            return self._read(data, 10, writer)
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError("decode.truncated", f"Confluent header needs 5 bytes, got {len(data)}")
            schema_id = int.from_bytes(data[1:5], "big")
            return self._read(data, 5, self._registry_writer(schema_id))
        raise DecodeError("decode.bad_magic", f"unknown framing byte 0x{data[0]:02x}")

    def _registry_writer(self, schema_id: int) -> Any:
        writer = self._registry_writers.get(schema_id)
        if writer is not None:
            return writer
        if self._registry is None:
            raise DecodeError("decode.unknown_schema", f"Confluent-framed record with schema id {schema_id} "
                                                       "but no schema registry is configured")
        schema = self._registry.schema_by_id(schema_id)  # RetryableError: registry down, not bad input
        if schema is None:
            raise DecodeError("decode.unknown_schema", f"schema id {schema_id} is not in the registry")
        try:
            writer = parse_schema(schema)
        except Exception as exc:
            raise DecodeError("decode.unknown_schema", f"schema id {schema_id} does not parse: {exc}") from exc
        self._registry_writers[schema_id] = writer
        return writer

    def _read(self, data: bytes, offset: int, writer: Any) -> tuple[dict[str, Any], bool]:
        if writer is self._parsed:  # written with this very schema: the generated reader
            try:
                fast, end = self._fast_read(data if type(data) is bytes else bytes(data), offset)
            except EOFError as exc:
                raise DecodeError("decode.truncated", "record body ends early") from exc
            except (ValueError, TypeError) as exc:  # bad union/enum index, negative length, not UTF-8
                raise DecodeError("decode.corrupt", f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            if end != len(data):
                raise DecodeError("decode.corrupt", f"{len(data) - end} trailing bytes after the record")
            return fast, True
        buf = io.BytesIO(data)
        buf.seek(offset)
        reader = None if writer is self._parsed else self._parsed
        try:
            record = schemaless_reader(buf, writer, reader)
        except EOFError as exc:
            raise DecodeError("decode.truncated", "record body ends early") from exc
        except Exception as exc:
            name = type(exc).__name__
            if name == "SchemaResolutionError":
                raise DecodeError("decode.schema_mismatch", str(exc)[:300]) from exc
            raise DecodeError("decode.corrupt", f"{name}: {str(exc)[:200]}") from exc
        if buf.tell() != len(data):
            raise DecodeError("decode.corrupt", f"{len(data) - buf.tell()} trailing bytes after the record")
        if not isinstance(record, dict):
            raise DecodeError("decode.corrupt", "body is not a record")
        return record, False
