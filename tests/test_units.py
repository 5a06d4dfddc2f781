"""planner.units: every accepted spelling gives the SI value; everything ambiguous is refused with a message."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.errors import UnitError
from planner.units import (
    BANDWIDTH,
    BYTES,
    FLOPS,
    TIME,
    format_bandwidth,
    parse_bandwidth,
    parse_bytes,
    parse_flops,
    parse_price,
    parse_time,
)


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_bytes, "80GB", 80e9),
        (parse_bytes, "80 GB", 80e9),
        (parse_bytes, " 1.5TB ", 1.5e12),
        (parse_bytes, "48GiB", 48 * 2**30),
        (parse_bytes, "512MiB", 512 * 2**20),
        (parse_bytes, "1KiB", 1024.0),
        (parse_bytes, "2KB", 2e3),
        (parse_bytes, "100B", 100.0),
        (parse_bytes, "1e3GB", 1e12),
        (parse_bytes, "1TiB", 2.0**40),
        (parse_bandwidth, "100Gbps", 12.5e9),
        (parse_bandwidth, "100 Gb/s", 12.5e9),
        (parse_bandwidth, "25GB/s", 25e9),
        (parse_bandwidth, "25 GB/s", 25e9),
        (parse_bandwidth, "1.6Tbps", 0.2e12),
        (parse_bandwidth, "900GB/s", 900e9),
        (parse_bandwidth, "10Mbps", 1.25e6),
        (parse_bandwidth, "64GiB/s", 64 * 2**30),
        (parse_bandwidth, "8bps", 1.0),
        (parse_time, "3.5us", 3.5e-6),
        (parse_time, "3.5µs", 3.5e-6),  # micro sign
        (parse_time, "3.5μs", 3.5e-6),  # Greek mu
        (parse_time, "100ms", 0.1),
        (parse_time, "2s", 2.0),
        (parse_time, "50ns", 50e-9),
        (parse_time, "1min", 60.0),
        (parse_time, "1h", 3600.0),
        (parse_flops, "989.4TFLOPS", 989.4e12),
        (parse_flops, "312 TFLOPS", 312e12),
        (parse_flops, "1.3PFLOPS", 1.3e15),
        (parse_flops, "500GFLOPS", 500e9),
        (parse_price, "$2.1/h", 2.1),
        (parse_price, "$ 2.1 / hour", 2.1),
        (parse_price, "$3/hr", 3.0),
        (parse_price, "$0/h", 0.0),
    ],
)
def test_accepted_spellings(parse, text, expected):
    assert parse(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        # ambiguous: bits or bytes?
        (parse_bandwidth, "100G", "cannot read '100G' as a bandwidth (write e.g. '100Gbps'"),
        (parse_bytes, "80G", "cannot read '80G' as a size (write e.g. '80GB'"),
        (parse_bytes, "80gb", "cannot read '80gb' as a size"),
        (parse_bandwidth, "100Gb", "cannot read '100Gb' as a bandwidth"),
        # wrong kind of quantity
        (parse_bandwidth, "80GB", "cannot read '80GB' as a bandwidth"),
        (parse_bytes, "100Gbps", "cannot read '100Gbps' as a size"),
        (parse_time, "5GB", "cannot read '5GB' as a duration (write e.g. '100ms'"),
        (parse_flops, "312T", "cannot read '312T' as a FLOP rate"),
        # unknown units and junk
        (parse_time, "3 fortnights", "cannot read '3 fortnights' as a duration"),
        (parse_bytes, "", "cannot read '' as a size"),
        (parse_bytes, "GB", "cannot read 'GB' as a size"),
        (parse_bytes, "1.2.3GB", "cannot read '1.2.3GB' as a size"),
        (parse_bytes, "nanGB", "cannot read 'nanGB' as a size"),
        # bare numbers: which unit?
        (parse_bytes, 80, "80 has no unit; write a size such as '80GB'"),
        (parse_bandwidth, 100.0, "100.0 has no unit; write a bandwidth such as '100Gbps'"),
        (parse_time, "2", "cannot read '2' as a duration"),
        (parse_bytes, "80", "cannot read '80' as a size"),
        # not a number at all
        (parse_bytes, True, "expected a size such as '80GB', got True"),
        (parse_bytes, None, "expected a size string such as '80GB', got NoneType"),
        (parse_time, ["1s"], "expected a duration string such as '100ms', got list"),
        # zero, negative, infinite
        (parse_bytes, "0GB", "'0GB': a size must be positive and finite"),
        (parse_bytes, "-5GB", "'-5GB': a size must be positive and finite"),
        (parse_bandwidth, "-100Gbps", "'-100Gbps': a bandwidth must be positive and finite"),
        (parse_time, "-1ms", "'-1ms': a duration must be positive and finite"),
        (parse_bytes, "1e400GB", "'1e400GB': a size must be positive and finite"),
        # prices
        (parse_price, "2.1", "cannot read '2.1' as a price; write dollars per hour such as '$2.1/h'"),
        (parse_price, "$2.1", "cannot read '$2.1' as a price"),
        (parse_price, "$2.1/month", "cannot read '$2.1/month' as a price"),
        (parse_price, 2.1, "cannot read 2.1 as a price"),
        (parse_price, "$-2/h", "'$-2/h': a price must be zero or positive and finite"),
    ],
)
def test_rejections_say_why(parse, value, message):
    with pytest.raises(UnitError) as info:
        parse(value)
    assert str(info.value).startswith(message)


def test_unit_error_is_a_value_error():
    """pydantic turns ValueErrors raised in validators into field errors with a path."""
    assert issubclass(UnitError, ValueError)


# Numbers as users write them: plain decimals and exponent forms.
_values = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
_spellings = st.sampled_from(["{}", "{:.3f}", "{:e}", "{:g}"])


@pytest.mark.parametrize(
    ("parse", "table"), [(parse_bytes, BYTES), (parse_bandwidth, BANDWIDTH), (parse_time, TIME), (parse_flops, FLOPS)]
)
@given(value=_values, spelling=_spellings, data=st.data())
def test_every_unit_scales_the_number(parse, table, value, spelling, data):
    unit = data.draw(st.sampled_from(sorted(table)))
    text = spelling.format(value)
    number = float(text)
    if number <= 0:
        return
    space = data.draw(st.sampled_from(["", " "]))
    assert parse(f"{text}{space}{unit}") == pytest.approx(number * table[unit], rel=1e-12)


@given(st.floats(min_value=1e3, max_value=1e14, allow_nan=False))
def test_format_bandwidth_round_trips(bytes_per_s):
    text = format_bandwidth(bytes_per_s)
    assert text.endswith("Gbps")
    assert math.isclose(parse_bandwidth(text), bytes_per_s, rel_tol=1e-5)
