"""`hexplan solve` (filled in with the scheduler)."""
