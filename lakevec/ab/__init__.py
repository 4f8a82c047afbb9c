"""A/B experiments: runs tagged with an experiment id, and their statistics."""
