"""Started in every Python process of the coverage run, the tests' own included (this folder is on its PYTHONPATH
only): measure the process, under the context of the test that started it (mutation.plugin exports it), so code
that tests run in subprocesses (the router, hexlaunch, fake engines) counts as covered by those tests. Coverage's
own .pth file may have started measuring already; then this only sets the context."""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage

    coverage.process_startup()
    _current = coverage.Coverage.current()
    if _current is not None and (_context := os.environ.get("HEXGEN2_MUTATION_CONTEXT")):
        _current.switch_context(_context)
