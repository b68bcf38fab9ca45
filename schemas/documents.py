"""Every YAML the project reads goes through `load_yaml`: config files, `file:` playbooks, starter kits.

A config is untrusted (an editor may write one; anyone who can write the config topic does), so the
loader takes plain data only, of bounded size:

- no aliases: `*name` is refused where it stands. `yaml.safe_load` keeps an aliased node shared, so
  nine levels of ten aliases ("billion laughs") load in a moment, validate, and expand into gigabytes
  later, when the document is copied, published or applied;
- at most DOCUMENT_CHARS characters and DOCUMENT_DEPTH levels of nesting (the composer recurses);
- JSON's types only: text keys (`on:` and `200:` are a boolean and a number in YAML; quote them),
  no sets or binary; a date or time is kept as the text written.

`check_document` makes the same nesting and type checks on a document from elsewhere (the config
topic's JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node

from schemas.errors import ConfigurationError
from schemas.playbook.budget import DOCUMENT_CHARS, DOCUMENT_DEPTH

_SCALARS = (str, int, float, bool, type(None))


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader without aliases and without unbounded nesting."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, f"YAML aliases (*{event.anchor}) are not allowed: write the value out",
                                event.start_mark)
        if self._depth >= DOCUMENT_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, f"nested over {DOCUMENT_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_PlainLoader.add_constructor("tag:yaml.org,2002:timestamp", _as_written)


def load_yaml(text: str, source: str) -> Any:
    """The document in `text`, or ConfigurationError naming `source` and what is wrong (with its line)."""
    if len(text) > DOCUMENT_CHARS:
        raise ConfigurationError(f"{source}: {len(text)} characters, over the limit of {DOCUMENT_CHARS}")
    try:
        document = yaml.load(text, Loader=_PlainLoader)  # a SafeLoader, with less
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not YAML: {exc}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a number of over 4,300 digits
        raise ConfigurationError(f"{source}: not YAML: {type(exc).__name__}: {str(exc)[:200]}") from None
    problems = check_document(document)
    if problems:
        raise ConfigurationError(f"{source}: " + "; ".join(problems[:10]))
    return document


def check_document(document: Any) -> list[str]:
    """Problems (with their paths) of a document that is not plain JSON-shaped data within the bounds."""
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack and len(problems) < 10:
        value, path, depth = stack.pop()
        if depth > DOCUMENT_DEPTH:
            problems.append(f"{path or 'the document'}: nested over {DOCUMENT_DEPTH} levels deep")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(f"{path or 'the document'}: the key {str(key)[:40]!r} is a "
                                    f"{type(key).__name__}, not text (quote it)")
                else:
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
        elif not isinstance(value, _SCALARS):
            problems.append(f"{path or 'the document'}: a {type(value).__name__} is not a value a config takes")
    return problems


def read_document(path: Path) -> str:
    """A YAML file's text, read no further than one character past DOCUMENT_CHARS (`load_yaml` refuses
    it then): a `file:` playbook naming /dev/zero ends there. OSError or ValueError (not UTF-8)."""
    with path.open(encoding="utf-8") as file:
        return file.read(DOCUMENT_CHARS + 1)
