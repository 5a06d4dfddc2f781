"""`hexplan provision`: which GPUs to rent, for a budget or a target load.

offers.py reads OFFERS.yaml (what can be rented, at what price, and what to serve); mixes.py turns a
choice of node counts into a cluster file; kinds.py assesses each offer's replicas with the cost
model; cut.py is the integer program that proposes mixes; search.py plans the best proposals in full
and picks one; output.py writes the chosen cluster and plan. Imports nothing, like planner.sim.
"""
