"""What a plan becomes for people and for the tools around us: drawings, plots, AIConfigurator and vllm-bench exports."""
