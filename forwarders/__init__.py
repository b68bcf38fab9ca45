"""One consumer per integration topic: batching, delivery, retries, dead letters (issue #5)."""
