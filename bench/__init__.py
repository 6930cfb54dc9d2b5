"""Benchmarks: each figure next to a peer or physical limit measured in the same run.

Run from the repository root: ``python -m bench.append``, ``python -m bench.submit``,
``python -m bench.rebuild`` (``--help`` lists the sizes).
"""
