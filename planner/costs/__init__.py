"""The cost model: what a replica layout costs in memory and time, and what KV transfers cost."""
