"""Performance and scale benchmarks of MemRec (``python -m bench``, ``memrec bench``).

One module per benchmark (online, tokens, propagation_degree, throughput, index, chroma), each with
``run(BenchOptions) -> BenchResult`` that prints a rich table and writes ``<out>/<name>.json``.
Figures come from these scripts, never from timed tests.
"""
