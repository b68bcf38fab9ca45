"""A minimal Confluent-compatible schema registry client (register, fetch by id), cached."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import requests

from schemas.errors import ConfigurationError, RetryableError

log = logging.getLogger(__name__)


class SchemaRegistryClient:
    """Talks to `/subjects/{subject}/versions` and `/schemas/ids/{id}` of a Confluent-compatible registry.

    Works with Confluent Schema Registry, Karapace and Apicurio's `/apis/ccompat/v7` API.
    """

    def __init__(self, url: str, timeout: tuple[float, float] = (3.0, 10.0),
                 auth: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = auth
        self._session: requests.Session | None = None
        self._by_id: dict[int, dict[str, Any]] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaRegistryClient(url={self.url!r})"

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            if self._auth:
                self._session.auth = self._auth
        return self._session

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer; None for a 4xx; RetryableError for 5xx, 429 and network errors."""
        try:
            resp = self._http().request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise RetryableError(f"schema registry unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise RetryableError(f"schema registry answered {resp.status_code}", status=resp.status_code)
        if resp.status_code >= 400:
            return None
        return resp.json()

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register `schema` under `subject` (idempotent) and return its id."""
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        key = (subject, text)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        body = self._call("POST", f"/subjects/{subject}/versions",
                          json={"schema": text, "schemaType": "AVRO"},
                          headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        if not body or "id" not in body:
            # A 4xx here (e.g. 409: incompatible with the subject's compatibility level) will not
            # fix itself by retrying: refuse to start.
            raise ConfigurationError(f"schema registry refused to register subject {subject}")
        schema_id = int(body["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id[schema_id] = schema
        log.info("registered schema subject=%s id=%s", subject, schema_id)
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any] | None:
        """The writer schema for `schema_id`, or None when the registry does not know it."""
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        body = self._call("GET", f"/schemas/ids/{schema_id}")
        if not body or "schema" not in body:
            return None
        schema: dict[str, Any] = json.loads(body["schema"])
        with self._lock:
            self._by_id[schema_id] = schema
        return schema
