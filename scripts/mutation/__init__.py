"""A seeded mutation tester of our own (see scripts/mutate.py)."""
