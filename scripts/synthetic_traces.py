"""Write the SYNTHETIC trace fixtures in examples/traces/synthetic/ (seeded; the only way they change).

The same 240 invented requests in two formats our trace reader accepts, so tests can check that both
readers see the same requests: the Azure LLM inference trace 2024's CSV (same columns as 2023, ISO
times with 6 fractional digits and a UTC offset) and Mooncake's JSON Lines (times in milliseconds,
`hash_ids` = one id per 512-token block, all distinct: no shared prefixes). Nothing here is measured:
arrivals are Poisson at 4 req/s, lengths lognormal. Run from anywhere:

    .venv/bin/python scripts/synthetic_traces.py
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "examples" / "traces" / "synthetic"
REQUESTS, RATE, SEED, BLOCK = 240, 4.0, 0, 512
START = datetime(2024, 5, 10, tzinfo=UTC)  # an invented moment, in the 2024 trace's week


def requests() -> list[tuple[int, int, int]]:
    """(arrival in µs from START, prompt tokens, output tokens)."""
    rng = np.random.default_rng(SEED)
    arrivals = np.cumsum(rng.exponential(1 / RATE, REQUESTS))
    prompts = np.maximum(np.rint(rng.lognormal(np.log(900), 0.9, REQUESTS)), 1).astype(int)
    outputs = np.maximum(np.rint(rng.lognormal(np.log(150), 1.0, REQUESTS)), 1).astype(int)
    return [(round(t * 1e6), int(p), int(o)) for t, p, o in zip(arrivals, prompts, outputs, strict=True)]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = requests()
    csv_lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    csv_lines += [f"{(START + timedelta(microseconds=us)).isoformat(sep=' ', timespec='microseconds')},{p},{o}"
                  for us, p, o in rows]  # fmt: skip
    (OUT / "azure2024-format.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    next_block, jsonl = 0, []
    for us, p, o in rows:
        blocks = -(-p // BLOCK)
        entry = {"timestamp": us // 1000, "input_length": p, "output_length": o}
        jsonl.append(json.dumps(entry | {"hash_ids": list(range(next_block, next_block + blocks))}))
        next_block += blocks
    (OUT / "mooncake-format.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} requests to {OUT}")


if __name__ == "__main__":
    main()
