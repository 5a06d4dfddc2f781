"""plan.yaml: its schema and I/O, assembly from the search's result, checks, diff and CI gates."""
