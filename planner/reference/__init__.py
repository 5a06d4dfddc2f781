"""Yardsticks for the scheduler: baseline planners, the exact optimum, a fluid bound, synthetic clusters."""
