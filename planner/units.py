"""Parse human quantities ("100Gbps", "25 GB/s", "80GiB", "3.5us", "$2.1/h") into SI floats.

Why one module: every file format in hexgen2 (catalogues, cluster specs) writes units the
same way, and ambiguity (is "100G" bits or bytes?) must be rejected in one place.

Returned units: bytes, bytes/s, seconds, FLOP/s, US dollars per hour.
"""

from __future__ import annotations

import math
import re

from planner.errors import UnitError, shown

_DIGITS = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?"
_NUMBER = rf"(?P<num>[-+]?{_DIGITS})"  # a sign is read so "-5GB" gets a clear message
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[A-Za-z/]*)\s*$")

_DECIMAL = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

BYTES = {f"{p}B": f for p, f in (_DECIMAL | _BINARY).items()}
BANDWIDTH = (
    {f"{p}B/s": f for p, f in (_DECIMAL | _BINARY).items()}
    | {f"{p}bps": f / 8 for p, f in _DECIMAL.items()}
    | {f"{p}b/s": f / 8 for p, f in _DECIMAL.items()}
)
TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
FLOPS = {f"{p}FLOPS": f for p, f in _DECIMAL.items()}


def _parse(text: object, table: dict[str, float], what: str, example: str) -> float:
    if isinstance(text, bool):
        raise UnitError(f"expected a {what} such as {example!r}, got {text!r}")
    if isinstance(text, int | float):
        raise UnitError(f"{shown(text)} has no unit; write a {what} such as {example!r}")
    if not isinstance(text, str):
        raise UnitError(f"expected a {what} string such as {example!r}, got {type(text).__name__}")
    match = _QUANTITY.match(text.replace("µ", "u").replace("μ", "u"))  # micro sign or Greek mu
    unit = match.group("unit") if match else None
    if match is None or unit not in table:
        known = ", ".join(sorted(table, key=lambda u: (len(u), u))[:12])
        raise UnitError(f"cannot read {shown(text)} as a {what} (write e.g. {example!r}; units: {known}, …)")
    value = float(match.group("num")) * table[unit]
    if not value > 0 or not math.isfinite(value):
        raise UnitError(f"{shown(text)}: a {what} must be positive and finite")
    return value


def parse_bytes(text: object) -> float:
    """'80GB' → 8e10, '48GiB' → 51539607552.0. Bare numbers are rejected (bits or bytes?)."""
    return _parse(text, BYTES, "size", "80GB")


def parse_bandwidth(text: object) -> float:
    """'100Gbps' → 1.25e10 bytes/s; '25GB/s' → 2.5e10 bytes/s."""
    return _parse(text, BANDWIDTH, "bandwidth", "100Gbps")


def parse_time(text: object) -> float:
    """'3.5us' → 3.5e-6 s; '2s', '100ms', '1min'."""
    return _parse(text, TIME, "duration", "100ms")


def parse_flops(text: object) -> float:
    """'989.4TFLOPS' → 9.894e14 FLOP/s."""
    return _parse(text, FLOPS, "FLOP rate", "312TFLOPS")


_PRICE = re.compile(rf"^\s*\$\s*{_NUMBER}\s*/\s*(?P<per>h|hr|hour)\s*$")


def parse_price(text: object) -> float:
    """'$2.1/h' → 2.1 US dollars per hour. Zero is allowed (owned hardware)."""
    if not isinstance(text, str) or (match := _PRICE.match(text)) is None:
        raise UnitError(f"cannot read {shown(text)} as a price; write dollars per hour such as '$2.1/h'")
    value = float(match.group("num"))
    if value < 0 or not math.isfinite(value):
        raise UnitError(f"{shown(text)}: a price must be zero or positive and finite")
    return value


def json_pattern(table: dict[str, float]) -> str:
    """The spellings `_parse` accepts for `table`, as a JSON Schema (ECMA-262) pattern."""
    units = "|".join(re.escape(unit) for unit in sorted(table, key=len, reverse=True))
    return rf"^\s*{_DIGITS}\s*(?:{units})\s*$"


PRICE_PATTERN = rf"^\s*\$\s*{_DIGITS}\s*/\s*(?:h|hr|hour)\s*$"


def format_bandwidth(bytes_per_s: float) -> str:
    """Inverse for display: 1.25e10 → '100Gbps'."""
    return f"{bytes_per_s * 8 / 1e9:g}Gbps"


def format_duration(seconds: float) -> str:
    """'2s', '1.5s' or '100ms': a duration as a person writes it (6 significant digits)."""
    return f"{seconds:.6g}s" if seconds >= 1 else f"{seconds * 1e3:.6g}ms"
