"""The playbook language, in one home: its model (`model.py`: filters, sections, mappings, transforms), the
expression language (`expressions.py`, `functions.py`) and its bounds (`budget.py`), code hooks
(`hooks.py`), the transforms (`transforms.py`), sections compiled to Python (`sections.py`), one
integration's decision for an event (`route.py`), and the starter kits (`starters/<kind>.yaml`)."""

from schemas.native import use_compiled

use_compiled(__name__, __path__)
