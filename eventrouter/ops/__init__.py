"""Operations on what the pipeline wrote: the time and offset ranges of a topic (`ranges.py`), replay to a
vendor (`replay.py`), re-routing raw events through the current playbooks (`reroute.py`), dead letters
listed, shown and re-injected (`deadletters.py`), and the commands that run them (`commands.py`)."""

from schemas.native import use_compiled

use_compiled(__name__, __path__)
