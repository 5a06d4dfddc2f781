"""launcher.engine's ports: every replica reserves a block of tp × pp NIXL side-channel ports (vLLM offsets each
worker's port from the base), the blocks follow one another without overlap, and every process of a replica gets its
block's base; API and rendezvous ports are one per replica."""

from __future__ import annotations

import pytest
from builders import cluster, draft_plan, node, replica

from launcher.engine import EngineOptions, build_launches, ordered


@pytest.fixture(scope="module")
def plan():
    c = cluster(node("x", "A100-80G", 4), node("y", "A100-80G", 4), node("l", "L40", 4))
    return draft_plan(
        c,
        replica(c, "prefill", ["x/0", "x/1"], ["y/0", "y/1"]),  # TP 2 × PP 2: 4 ports
        replica(c, "prefill", ["x/2"], ["y/2"]),  # TP 1 × PP 2: 2 ports
        replica(c, "decode", ["l/0", "l/1"]),  # 2 ports
        replica(c, "decode", ["x/3"]),
        replica(c, "colocated", ["l/2"]),  # no KV transfer, its block is reserved all the same
    )


@pytest.mark.parametrize("base", [5600, 7000])
def test_each_replica_reserves_tp_times_pp_side_channel_ports_in_plan_order(plan, base) -> None:
    launches = build_launches(plan, EngineOptions(model="m", served_name="m", side_channel_port=base))
    assert [lau.replica.id for lau in launches] == [r.id for r in ordered(plan)]
    assert {(lau.replica.tp, lau.replica.pp) for lau in launches} >= {(2, 2), (1, 2)}, "PP > 1 is exercised"
    expected = base
    for lau in launches:
        assert lau.side_channel_port == expected, lau.replica.id
        expected += lau.replica.tp * lau.replica.pp
    blocks = [range(lau.side_channel_port, lau.side_channel_port + lau.replica.tp * lau.replica.pp) for lau in launches]
    used = [port for block in blocks for port in block]
    assert len(used) == len(set(used)) == sum(lau.replica.tp * lau.replica.pp for lau in launches)


def test_every_process_of_a_disaggregated_replica_gets_its_blocks_base(plan) -> None:
    for lau in build_launches(plan, EngineOptions(model="m", served_name="m")):
        for process in lau.processes:
            if lau.replica.role == "colocated":
                assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in process.env
            else:
                assert process.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == str(lau.side_channel_port)
        assert len(lau.processes) == len({s.gpus[0].split("/")[0] for s in lau.replica.stages})


def test_other_connectors_get_no_side_channel(plan) -> None:
    for lau in build_launches(plan, EngineOptions(model="m", served_name="m", connector="mooncake")):
        assert all("VLLM_NIXL_SIDE_CHANNEL_PORT" not in p.env for p in lau.processes)


def test_api_and_rendezvous_ports_are_one_per_replica(plan) -> None:
    options = EngineOptions(model="m", served_name="m", api_port=9000, master_port=30000)
    launches = build_launches(plan, options)
    assert [lau.port for lau in launches] == list(range(9000, 9000 + len(launches)))
    for index, lau in enumerate(launches):
        for process in lau.processes:
            argv = list(process.argv)
            if len(lau.processes) > 1:
                assert argv[argv.index("--master-port") + 1] == str(30000 + index)
            else:
                assert "--master-port" not in argv
