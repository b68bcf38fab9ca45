"""Errors of the embedded broker, classed by how the caller handles them."""

from __future__ import annotations


class LocalKafkaError(Exception):
    """Root error of the embedded broker."""


class ToolMissingError(LocalKafkaError):
    """Java or Maven is missing: a configuration problem, refuse to start."""


class FetchError(LocalKafkaError):
    """Maven could not fetch the broker jars."""


class StartError(LocalKafkaError):
    """A broker process did not become ready."""
