"""One consumer per integration topic: batching, delivery, retries, dead letters."""

from schemas.native import use_compiled

use_compiled(__name__, __path__)
