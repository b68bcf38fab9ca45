"""What one integration receives from one event: consent, the event's `integrations` map, then the
integration's playbook (filters; global, event-specific and default sections; mappings, enrichments,
rename, drop; a Python function of a module the operator allows: schemas/playbook/hooks.py). Pure: plain dicts
in, `Outcome` out. One application of a playbook to an event has the budget of schemas/playbook/budget.py; past
it, the event is dead-lettered for this integration as `playbook.budget`.

Every event an integration does not receive is filtered by a named rule, counted per rule:
`integrations_map`, `consent.<category>`, `filter.allow`, `filter.deny`, `events["<name>"].drop`,
`default.drop`, `global.drop`, `function`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from fnmatch import fnmatchcase
from typing import Any, Final, NamedTuple

import orjson

from schemas.catalogue import destination
from schemas.config import Integration
from schemas.errors import FinalError
from schemas.playbook.budget import BudgetError, end_evaluation, start_evaluation
from schemas.playbook.expressions import ExpressionError, compile_expression
from schemas.playbook.hooks import code_modules, load_function
from schemas.playbook.model import Playbook, Rule, Section
from schemas.playbook.sections import compile_section


class PlaybookError(FinalError):
    """A playbook failed on an event (an expression or a function): dead-letter it with this reason."""


class Outcome(NamedTuple):
    """A vendor-shaped `payload` with its `event_name`, or the rule that filtered the event. (A
    NamedTuple: one is made per event and integration, and a frozen dataclass costs far more to build.)"""

    payload: dict[str, Any] | None = None
    event_name: str | None = None
    filtered_by: str | None = None


def event_key(event: Mapping[str, Any]) -> str:
    """The name playbook sections and event filters match: a track's event name, else the call type."""
    call = event.get("type")
    if call == "track":
        return str(event.get("event") or "")
    return str(call)


class _Section:
    def __init__(self, section: Section, where: str) -> None:
        self.where = where
        self.apply = compile_section(section, where)
        self.rename = section.rename
        self.drop = section.drop


class _Rule:
    def __init__(self, rule: Rule) -> None:
        self.types = frozenset(rule.type) if rule.type is not None else None
        self.patterns = list(rule.event) if rule.event is not None else None
        self.when = compile_expression(rule.when) if rule.when is not None else None

    def matches(self, event: Mapping[str, Any], key: str) -> bool:
        """Every criterion given holds (type, then event name patterns, then the condition)."""
        if self.types is not None and event.get("type") not in self.types:
            return False
        if self.patterns is not None and not any(fnmatchcase(key, p) for p in self.patterns):
            return False
        return self.when is None or bool(self.when(event, {}))


class CompiledPlaybook:
    """A playbook made ready to run: expressions compiled, paths parsed, functions imported."""

    def __init__(self, playbook: Playbook, *, modules: Collection[str] | None = None, where: str = "playbook") -> None:
        self.allow = _Rule(playbook.filter.allow) if playbook.filter.allow else None
        self.deny = _Rule(playbook.filter.deny) if playbook.filter.deny else None
        self.keep_event = playbook.keep_event
        self.global_ = _Section(playbook.global_, "global")
        self.events = {name: _Section(s, f'events["{name}"]') for name, s in playbook.events.items()}
        self.default = _Section(playbook.default, "default")
        self.function: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any] | None] | None = None
        if playbook.function:  # ConfigurationError unless the operator allows its module (EVENTROUTER_CODE_MODULES)
            self.function = load_function(playbook.function, code_modules() if modules is None else modules,
                                          f"{where}.function")

    def apply(self, event: Mapping[str, Any]) -> Outcome:
        key = event_key(event)
        start_evaluation()
        try:
            if self.allow is not None and not self.allow.matches(event, key):
                return _ALLOW
            if self.deny is not None and self.deny.matches(event, key):
                return _DENY
            section = self.events.get(key, self.default)
            if self.global_.drop:
                return Outcome(None, None, f"{self.global_.where}.drop")
            if section.drop:
                return Outcome(None, None, f"{section.where}.drop")
            if self.keep_event:
                payload: dict[str, Any] = orjson.loads(orjson.dumps(event))
                owned = _ids(payload)
            else:
                payload = {}
                owned = {id(payload)}
            self.global_.apply(event, payload, owned)
            section.apply(event, payload, owned)
        except (ExpressionError, BudgetError) as exc:
            raise PlaybookError(exc.reason, exc.message) from None
        finally:
            end_evaluation()
        name = section.rename or self.global_.rename or key
        if self.function is not None:
            try:
                result = self.function(event, payload)
            except Exception as exc:  # noqa: BLE001 - user code: whatever it raises is a playbook error
                raise PlaybookError("playbook.function", f"{type(exc).__name__}: {exc}"[:300]) from None
            if result is None:
                return Outcome(None, None, "function")
            payload = result
        return _new(Outcome, (payload, name, None))  # Outcome(payload, name) without NamedTuple's __new__


_new = tuple.__new__
_ALLOW: Final = Outcome(None, None, "filter.allow")
_DENY: Final = Outcome(None, None, "filter.deny")
_MAP: Final = Outcome(None, None, "integrations_map")


def _ids(value: Any) -> set[int]:
    """Ids of every container in `value` (a fresh copy this payload owns)."""
    out = {id(value)}
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list):
            out |= _ids(item)
    return out


class Route:
    """One integration's decision for each event: does it receive it, and in what shape."""

    def __init__(self, integration: Integration, *, modules: Collection[str] | None = None) -> None:
        """`modules`: those code hooks may come from (None: EVENTROUTER_CODE_MODULES)."""
        self.integration = integration
        self.name = integration.name
        self.playbook = CompiledPlaybook(integration.playbook, modules=modules,
                                         where=f"integration {integration.name!r}: playbook")
        self._names = frozenset((integration.name.lower(), *destination(integration.kind).names))
        self._category = integration.consent.lower() if integration.consent else None

    def decide(self, event: Mapping[str, Any]) -> Outcome:
        switches = event.get("integrations")
        if switches and self._blocked_by_map(switches):
            return _MAP
        if self._category is not None and not self._consented(event.get("context")):
            return Outcome(None, None, f"consent.{self.integration.consent}")
        return self.playbook.apply(event)

    def _blocked_by_map(self, switches: Any) -> bool:
        """Segment's rule: an entry for this destination decides; otherwise "All" (default on)."""
        if not switches or not (type(switches) is dict or isinstance(switches, Mapping)):
            return False
        everything = True
        for key, value in switches.items():
            name = str(key).lower()
            if name in self._names:
                return value is False
            if name == "all":
                everything = value is not False
        return not everything

    def _consented(self, context: Any) -> bool:
        """False when the event opts out of this integration's category; an event without preferences is
        consented unless the integration says consent_required."""
        consent = context.get("consent") if type(context) is dict or isinstance(context, Mapping) else None
        if not (type(consent) is dict or isinstance(consent, Mapping)):
            return not self.integration.consent_required
        opt_out = consent.get("optOut")
        if opt_out is True or (isinstance(opt_out, list) and any(str(c).lower() == self._category for c in opt_out)):
            return False
        preferences = consent.get("categoryPreferences")
        if not (type(preferences) is dict or isinstance(preferences, Mapping)):
            return not self.integration.consent_required
        for category, allowed in preferences.items():
            if str(category).lower() == self._category:
                return allowed is True
        return not self.integration.consent_required
