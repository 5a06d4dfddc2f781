"""Request-length workloads: fixed means, parametric distributions, or a replayed trace.

Why: the cost model needs a few moments (mean prompt, mean of squared prompt for the
quadratic attention term, mean output); the simulator needs samples and arrival times.
Both come from here so they always describe the same requests.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.special import ndtri

from planner.errors import InputError
from planner.yamlio import read_text

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
# Workload classes of the HexGen-2/DistServe papers: heavy prefill = prompt > 512, heavy decode = output > 128.
HEAVY_PROMPT = 512
HEAVY_OUTPUT = 128
CLASSES = ("HPLD", "HPHD", "LPHD", "LPLD")
MAX_TOKENS = 10**7  # per request and column: beyond any context window; bounds memory and time per request


@dataclass(frozen=True, eq=False)
class Trace:
    """Arrival times (s from the first request) and token counts of replayed requests."""

    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    @classmethod
    def of(cls, times: list[float], prompts: list[int], outputs: list[int]) -> Trace:
        """Requests in arrival order (stable for equal times), times counted from the first arrival (s)."""
        arrival = np.asarray(times, dtype=float)
        order = np.argsort(arrival, kind="stable")
        arrival = arrival[order] - arrival[order][0]
        return cls(arrival, np.asarray(prompts, dtype=np.int64)[order], np.asarray(outputs, dtype=np.int64)[order])

    def select(self, workload_class: str) -> Trace:
        """Keep only requests of one class (e.g. 'HPLD'), arrival times unchanged."""
        heavy_p = self.prompt > HEAVY_PROMPT
        heavy_d = self.output > HEAVY_OUTPUT
        wanted_p = workload_class[0] == "H"
        wanted_d = workload_class[2] == "H"
        keep = (heavy_p == wanted_p) & (heavy_d == wanted_d)
        return Trace(self.arrival_s[keep], self.prompt[keep], self.output[keep])


# ISO 8601 date and time, any number of fractional digits (the Azure trace writes 7; datetime takes 6),
# an optional UTC offset ("Z", "+02:00").
_TIMESTAMP = re.compile(
    r"^\s*(?P<head>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d{2}:?\d{2})?\s*$"
)


def _parse_timestamp(text: str) -> tuple[float, bool]:
    """(POSIX seconds in UTC, whether the text had an offset). Naive times are read as UTC, so gaps never
    depend on the machine's time zone or DST. Raises ValueError for anything else."""
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(text)
    frac = (match["frac"] or "")[:6]
    moment = datetime.fromisoformat(match["head"] + (f".{frac:0<6}" if frac else "") + (match["zone"] or ""))
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp(), moment.tzinfo is not None
    except OverflowError:  # an offset that moves the moment out of datetime's range
        raise ValueError(text) from None


def _tokens(text: str, column: str, where: str) -> int:
    value = int(text)  # ValueError for anything but an integer, including text of more than 4,300 digits
    if value <= 0:
        raise InputError(f"{where}: token counts must be positive, got {column} {value}.")
    if value > MAX_TOKENS:
        raise InputError(f"{where}: {column} {value:,} is more than {MAX_TOKENS:,} tokens per request.")
    return value


def read_trace(path: Path) -> Trace:
    """Read a request trace: a CSV with the Azure LLM inference traces' columns TIMESTAMP, ContextTokens,
    GeneratedTokens (the 2023 and the 2024 release), or Mooncake JSONL (`trace_format` tells them apart).

    Every refusal of a CSV names the file and the line: a bad header, a row that is not 'timestamp,int,int',
    token counts outside 1..MAX_TOKENS, a CSV error (a field over the csv module's limit, a
    runaway quote), a mix of naive and offset timestamps, or no request at all.
    """
    text = read_text(path, what="trace CSV")
    if trace_format(path, text) == "mooncake":
        return read_mooncake(path, text)
    rows = csv.reader(text.splitlines())
    try:
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != list(TRACE_COLUMNS):
            raise InputError(
                f"{path}: line 1: expected the header {','.join(TRACE_COLUMNS)}, got {','.join(header or [])!r:.200}.",
                hint="use the Azure LLM inference trace format (see examples/traces/README.md)",
            )
        times, prompts, outputs = [], [], []
        first_zone: tuple[int, bool] | None = None  # (line, has offset) of the first timestamp
        for row in rows:
            if not row:
                continue
            where = f"{path}: line {rows.line_num}"
            try:
                moment, has_offset = _parse_timestamp(row[0])
                prompts.append(_tokens(row[1], "ContextTokens", where))
                outputs.append(_tokens(row[2], "GeneratedTokens", where))
            except (ValueError, IndexError):
                raise InputError(f"{where}: expected 'timestamp,int,int', got {','.join(row)!r:.200}.") from None
            first_zone = first_zone or (rows.line_num, has_offset)
            if has_offset != first_zone[1]:  # naive times are UTC: mixed with offsets, one of the two is wrong
                raise InputError(
                    f"{where}: timestamp {row[0].strip()!r:.60} has {'a' if has_offset else 'no'} UTC offset but "
                    f"line {first_zone[0]}'s has {'none' if has_offset else 'one'}; write every timestamp in UTC, "
                    "or every one with its offset."
                )
            times.append(moment)
    except csv.Error as exc:
        raise InputError(f"{path}: line {rows.line_num}: {exc}.") from None
    if not times:
        raise InputError(f"{path}: the trace has no requests.")
    return Trace.of(times, prompts, outputs)


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts; `sample` and the moments agree."""

    kind: str  # fixed | uniform | exponential | lognormal | empirical
    mean: float
    cv: float = 0.0
    low: float = 0.0
    high: float = 0.0
    values: tuple[int, ...] = ()

    @property
    def second_moment(self) -> float:
        """E[x²]: drives the quadratic attention cost of prefill."""
        if self.kind == "empirical":
            return float(np.mean(np.square(np.asarray(self.values, dtype=float))))
        if self.kind == "uniform":
            return (self.low**2 + self.low * self.high + self.high**2) / 3
        cv = 1.0 if self.kind == "exponential" else self.cv
        return self.mean**2 * (1 + cv**2)

    @cached_property
    def upper(self) -> int:
        """A high quantile (p99.9) used to size max_model_len (computed once: the cost model asks often)."""
        if self.kind == "fixed":
            return round(self.mean)
        if self.kind == "uniform":
            return round(self.high)
        if self.kind == "empirical":
            return int(np.quantile(self._array, 0.999))
        return round(self.sample(np.random.default_rng(0), 20_000).max())

    @cached_property
    def _array(self) -> np.ndarray:
        return np.asarray(self.values)

    def quantile(self, q: float) -> float:
        """The q-quantile of the length (exact for fixed, uniform, exponential, lognormal and empirical)."""
        match self.kind:
            case "fixed":
                return self.mean
            case "uniform":
                return self.low + q * (self.high - self.low)
            case "exponential":
                return -self.mean * float(np.log1p(-q))
            case "lognormal":
                sigma = float(np.sqrt(np.log1p(self.cv**2)))
                return float(np.exp(np.log(self.mean) - sigma**2 / 2 + sigma * ndtri(q)))
            case _:
                return float(np.quantile(self._array, q))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n integer lengths ≥ 1."""
        match self.kind:
            case "fixed":
                raw = np.full(n, self.mean)
            case "uniform":
                raw = rng.uniform(self.low, self.high, n)
            case "exponential":
                raw = rng.exponential(self.mean, n)
            case "lognormal":
                sigma2 = np.log1p(self.cv**2)
                raw = rng.lognormal(np.log(self.mean) - sigma2 / 2, np.sqrt(sigma2), n)
            case _:
                raw = rng.choice(np.asarray(self.values), n)
        return np.maximum(np.rint(raw), 1).astype(np.int64)


@dataclass(frozen=True)
class Workload:
    """What requests look like: prompt and output length distributions."""

    prompt: Lengths
    output: Lengths
    trace: Path | None = None  # the trace the lengths come from (its arrival times: exports replay them)
    trace_class: str | None = None

    @property
    def decode_tokens(self) -> float:
        """Tokens a decode replica generates per request: prefill emits the first one."""
        return max(self.output.mean - 1.0, 1.0)

    @classmethod
    def from_trace(cls, path: Path, workload_class: str | None = None) -> Workload:
        trace = read_trace(path)
        if workload_class:
            trace = trace.select(workload_class)
            if len(trace.prompt) == 0:
                raise InputError(f"{path}: no request of class {workload_class} in the trace.")
        return cls(
            prompt=Lengths("empirical", float(trace.prompt.mean()), values=tuple(int(v) for v in trace.prompt)),
            output=Lengths("empirical", float(trace.output.mean()), values=tuple(int(v) for v in trace.output)),
            trace=path,
            trace_class=workload_class,
        )


MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")


def trace_format(path: Path, text: str) -> Literal["azure", "mooncake"]:
    """Which reader a trace needs, decided here only: JSON Lines (a `.jsonl` file, or text starting with
    `{`) is the Mooncake format; anything else is read as the Azure CSV (whose reader names what is wrong)."""
    return "mooncake" if path.suffix.lower() == ".jsonl" or text.lstrip().startswith("{") else "azure"


def read_mooncake(path: Path, text: str) -> Trace:
    """Mooncake's trace format (kvcache-ai/Mooncake, FAST'25): one JSON object per line with `timestamp`
    (milliseconds from the start), `input_length` and `output_length` (tokens); `hash_ids` (prefix-cache
    block ids) and any other field are ignored, as the cost model has no prefix cache."""
    times, prompts, outputs = [], [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {line_no}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not a JSON object ({exc.msg}).") from None
        except RecursionError:  # json's parser recurses per nesting level
            raise InputError(f"{where}: not a trace record (JSON nested too deeply).") from None
        if not isinstance(entry, dict) or any(key not in entry for key in MOONCAKE_FIELDS):
            raise InputError(f"{where}: expected a JSON object with {', '.join(MOONCAKE_FIELDS)}, got {line!r:.120}.")
        stamp, prompt, output = (entry[key] for key in MOONCAKE_FIELDS)
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp) or stamp < 0:
            raise InputError(f"{where}: timestamp must be milliseconds ≥ 0, got {stamp!r:.60}.")
        for name, value in (("input_length", prompt), ("output_length", output)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{where}: {name} must be a positive integer (tokens), got {value!r:.60}.")
            if value > MAX_TOKENS:
                raise InputError(f"{where}: {name} {value:,} is more than {MAX_TOKENS:,} tokens per request.")
        times.append(stamp / 1000)
        prompts.append(prompt)
        outputs.append(output)
    if not times:
        raise InputError(f"{path}: the trace has no requests.")
    return Trace.of(times, prompts, outputs)
