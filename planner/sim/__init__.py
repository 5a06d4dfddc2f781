"""Discrete-event simulator of a plan serving a request stream (`hexplan simulate`), routed by the router's policy."""
