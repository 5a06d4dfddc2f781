"""The words every package shares: replica roles, KV connectors, GPU and replica ids, the strict schema base.

Why a module of their own: the cost model, the scheduler, the plan schema and the launcher all speak of
roles and GPU ids; defining them here (above every package) keeps the output schema from being the
place the domain's vocabulary lives.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

Role = Literal["prefill", "decode", "colocated"]
ROLE_PREFIX = {"prefill": "p", "decode": "d", "colocated": "c"}
Connector = Literal["nixl", "mooncake", "lmcache", "none"]
Dtype = Literal["float16", "bfloat16", "fp8"]
# throughput: saturated requests/s; cost: that per $/h; goodput: requests/s within the SLO; goodput_per_usd: per $/h
Objective = Literal["throughput", "cost", "goodput", "goodput_per_usd"]
# which roles a plan's replicas may take: prefill + decode only (HexGen-2), colocated only, or any per group
RolesMode = Literal["disaggregated", "colocated", "mixed"]
GpuId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[0-9]+$")]  # node/index


class Strict(BaseModel):
    """Base of every file schema: unknown keys are errors (a typo must fail loudly), records are frozen, and
    defaults go through the same validation as a user's values (latency "10us" is parsed, never kept raw)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)


def replica_id(role: str, gpus: list[str] | tuple[str, ...]) -> str:
    """Stable id from the role and the GPU set: unchanged replicas keep their ids across re-plans."""
    digest = hashlib.sha1(",".join(sorted(gpus)).encode()).hexdigest()[:6]
    return f"{ROLE_PREFIX[role]}-{sorted(gpus)[0].split('/')[0]}-{digest}"
