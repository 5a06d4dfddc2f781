"""launcher.vllm_args's ports: every replica reserves a block of tp × pp NIXL side-channel ports (vLLM offsets each
worker's port from the base), the blocks follow one another without overlap, and every process of a replica gets its
block's base; API and rendezvous ports are one per replica."""

from __future__ import annotations

import itertools

import pytest
from builders import cluster, draft_plan, node, replica

from launcher.vllm_args import EngineOptions, Ports, assign_ports, build_launches, ordered


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
        assert lau.ports.side_channel == expected, lau.replica.id
        expected += lau.replica.tp * lau.replica.pp
    blocks = [
        range(lau.ports.side_channel, lau.ports.side_channel + lau.replica.tp * lau.replica.pp) for lau in launches
    ]
    used = [port for block in blocks for port in block]
    assert len(used) == len(set(used)) == sum(lau.replica.tp * lau.replica.pp for lau in launches)


def test_every_process_of_a_disaggregated_replica_gets_its_blocks_base(plan) -> None:
    for lau in build_launches(plan, EngineOptions(model="m", served_name="m")):
        for process in lau.processes:
            if lau.replica.role == "colocated":
                assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in process.env
            else:
                assert process.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == str(lau.ports.side_channel)
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


def test_ports_taken_by_running_replicas_are_skipped_block_by_block(plan) -> None:
    """`hexlaunch apply`: a running replica holds API 9001, rendezvous 30000 and side channels 5602–5605; new
    replicas count up from the bases around them, and no side-channel block overlaps the taken one."""
    options = EngineOptions(model="m", served_name="m", api_port=9000, master_port=30000, side_channel_port=5600)
    taken = [Ports(api=9001, side_channel=5602, side_channels=4, master=30000)]
    ports = assign_ports(ordered(plan), options, taken)
    assert [p.api for p in ports] == [9000, *range(9002, 9002 + len(ports) - 1)]
    assert [p.master for p in ports] == list(range(30001, 30001 + len(ports)))
    blocks = [(p.side_channel, p.side_channel + p.side_channels) for p in [*taken, *ports]]
    assert all(a_end <= b or b_end <= a for (a, a_end), (b, b_end) in itertools.combinations(blocks, 2))
    assert [p.side_channels for p in ports] == [r.tp * r.pp for r in ordered(plan)]
    assert ports[0].side_channel == (5600 if ports[0].side_channels <= 2 else 5606)
