"""A short run of the project's fuzzer (tests/fuzz/) in the test suite: `make fuzz` runs 10,000.

250 seeded inputs through hexplan and hexlaunch (mutated clusters, plans, traces, HF configs,
catalogues, options, and FIFOs/devices/directories/oversize files where files are read), each in
a worker process with a time limit. Every input must end without a traceback or hang, bad input
with exit 2 and a message naming the file or option, and a failed command must leave its -o
target untouched. On failure the message lists each distinct signature with its case index;
`python -m tests.fuzz --seed 0 --only I` reproduces one.
"""

from __future__ import annotations

import pytest
from fuzz import corpus as corpus_module
from fuzz.runner import CATEGORIES, run
from fuzz.targets import build_case

INPUTS = 250
SEED = 0


@pytest.mark.slow
def test_fuzz_finds_nothing(tmp_path):
    corpus = corpus_module.build(tmp_path / "corpus")
    report = run(corpus, lambda i: build_case(corpus, SEED, i), list(range(INPUTS)), timeout=10.0)
    assert report.inputs == INPUTS
    summary = {category: report.count(category) for category in CATEGORIES}
    details = "\n".join(
        f"{category}: {signature} ×{len(failures)} (first: --seed {SEED} --only {failures[0].case.index}, "
        f"{'; '.join(failures[0].case.notes)})"
        for (category, signature), failures in sorted(report.signatures().items())
    )
    assert not report.failures, f"{summary}\n{details}"
