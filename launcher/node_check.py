"""What every node needs before an engine starts there: the pinned vLLM and NIXL, checked on the node itself.

A mismatch is the worst kind of failure to find late: a prefill and a decode on different vLLM versions
fail their NIXL handshake (the version is part of its compatibility hash) only when the first request
arrives. So before anything starts, a tiny Ray task on each node the plan uses reports the versions its
Python sees, and the launch stops listing every node that differs. Skipped when `--engine-cmd` replaces
vLLM (tests, wrappers) or with `--skip-node-check`.
"""

from __future__ import annotations

from collections.abc import Mapping

from launcher.errors import LaunchError, listed

PINNED = {"vllm": "0.33.0", "nixl": "1.5.1"}  # README "Install on every node"; `make test-vllm` uses this vLLM


def wanted_packages(connector: str) -> dict[str, str]:
    """The packages a node needs for this connector (NIXL only when it moves the KV)."""
    return {k: v for k, v in PINNED.items() if k != "nixl" or connector == "nixl"}


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Run on a node: the version of each distribution its Python sees (None when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def version_problems(found: Mapping[str, Mapping[str, str | None]], wanted: Mapping[str, str]) -> list[str]:
    """One line per node and package that is missing or at another version than pinned."""
    problems = []
    for node, versions in sorted(found.items()):
        for name, pinned in sorted(wanted.items()):
            have = versions.get(name)
            if have is None:
                problems.append(f"{node}: {name} is not installed (pinned: {name}=={pinned}).")
            elif have != pinned:
                problems.append(f"{node}: {name} {have} is installed; the launcher is pinned to {name}=={pinned}.")
    return problems


def check_nodes(node_ids: Mapping[str, str], connector: str) -> None:
    """Ask each Ray node (plan node name → Ray node id) for its versions; LaunchError listing every mismatch."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    wanted = wanted_packages(connector)
    probe = ray.remote(num_cpus=0)(installed_versions)
    pending = {
        node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(
            tuple(wanted)
        )
        for node, node_id in node_ids.items()
    }
    found = {node: ray.get(ref, timeout=60) for node, ref in pending.items()}
    problems = version_problems(found, wanted)
    if problems:
        raise LaunchError(
            listed("the nodes do not run the pinned engine software; nothing was started:", problems),
            hint=f"pip install {' '.join(f'{k}=={v}' for k, v in wanted.items())} on those nodes "
            "(or --skip-node-check to launch anyway)",
        )
