"""What publishes events: the Python SDK, the HTTP tracking gateway, file import (issue #3)."""
