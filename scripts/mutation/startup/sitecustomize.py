"""Started in every Python process of the coverage run (this folder is on its PYTHONPATH only): measure the
process too, under the context of the test that started it (mutation.plugin exports it), so code that tests
run in subprocesses (the router, hexlaunch, fake engines) counts as covered by those tests."""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage

    _started = coverage.process_startup()
    if _started is not None and (_context := os.environ.get("HEXGEN2_MUTATION_CONTEXT")):
        _started.switch_context(_context)
