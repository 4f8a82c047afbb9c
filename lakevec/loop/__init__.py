"""Closing the loop (the seed's Phase 8): promote accepted answers into the corpus,
and run replay → promote → reindex cycles that record pass and escalation rates."""
