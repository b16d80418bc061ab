"""The sections of BENCHMARKS.md, one module per family of sections (``bench/benchmarks_md.py``
lays them out): ``_render`` holds what every section uses (reading a results file, a table, a
figure's format, a target's verdict, the source line, the recipe's words)."""

__all__: list[str] = []
