"""A seeded mutation fuzzer for hexplan and hexlaunch (issue 9): `make fuzz`, and a short run in `make test`.

corpus.py   seed inputs: example clusters, plans solved at start-up, a trace, an HF config, a catalogue
mutate.py   mutation operators on parsed trees and on raw bytes
cases.py    a case: its files (or hostile non-files), the command, what must hold
targets.py  one case builder per target (clusters, plans, traces, options, hostile files, ...)
invoke.py   run the real CLI entry points in-process, capturing streams and escaped exceptions
runner.py   worker processes with a per-input time limit; classification; reproducers
"""
