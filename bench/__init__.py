"""Offload's benchmark harness (`make bench`; BENCHMARKS.md says what each figure means).

Run from the repository root with the workspace venv: `python -m bench --help`. Every section
starts what it measures as real processes on 127.0.0.1 (its own redis-server, the services'
own commands, the peers' own worker commands), runs its rounds with Offload and the peers
interleaved, and returns figures as medians with their spread. `bench.report` turns the
results into the tables of BENCHMARKS.md and the charts under docs/bench/.
"""
