"""hexgen2 planner: place an LLM on heterogeneous GPUs with prefill and decode disaggregated."""

__version__ = "0.1.0"
