"""What a plan becomes for people and for the tools around us: drawings, plots, and the
AIConfigurator and vllm-bench exports (the Kubernetes export is the launcher's: launcher.k8s)."""
