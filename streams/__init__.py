"""The Faust router: decode, validate, dedupe, apply playbooks, route to integration topics (issue #4)."""
