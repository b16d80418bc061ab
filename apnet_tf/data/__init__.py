"""Training data, floor 2: label tables and their hash splits (``labels``), the TFRecord schema,
``manifest.json``, the resumable shard writer (``records``), a record folder as ``tf.data``
(``dataset``, ``record_counts``), the reads of spectra and shards: planning them as numbered
units (``planning``), a reader per kind of unit (``readers``) and the reader processes
(``pool``), the synthetic survey (``synth``) with its photometry (``synth_photometry``), the
synthetic BOSS survey (``synth_boss``), and what a re-run of the demo may reuse
(``demo_cache``).

May import: ``io`` and the base modules.
"""

__all__ = [
    "dataset", "demo_cache", "labels", "manifest", "planning", "pool", "readers",
    "record_counts", "record_schema", "records", "synth", "synth_boss", "synth_photometry",
]
