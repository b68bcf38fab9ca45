"""One module per vendor (issue #5)."""
