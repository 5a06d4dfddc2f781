"""What the planner reads: the catalogue, the cluster file, the workload, and the resolved problem."""
