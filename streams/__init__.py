"""The Faust router: decode, validate, dedupe, apply playbooks, route to integration topics."""

from schemas.native import use_compiled

use_compiled(__name__, __path__)
