"""``ouvir bench``: how fast and how lean the streaming pipeline is, measured through the real engine.

One run measures, per configuration (backend x precision x look-ahead): the whole-pipeline real-time
factor (features + network + decoding, through ``Recognizer`` / ``Stream``), per-chunk compute latency
p50/p95/p99, peak RSS, model size and load time; optionally sherpa-onnx on the same ONNX files, audio and
thread count, and a long run (N minutes streamed as fast as possible: RSS and latency over time).

Modules: ``stats`` (percentiles, RTF, long-run windows), ``machine`` (CPU, cores, RSS), ``audio`` (the
looped input in chunk-sized blocks), ``harness`` (timing one stream with an injected clock),
``engines`` (ouvir and sherpa-onnx behind one feed/finish seam), ``worker`` (one configuration in a fresh
process), ``models`` (what to run, exports cached), ``large`` (the 114M-parameter NeMo recipe with seeded
random weights), ``report`` / ``plots`` (JSON, markdown, PNG), ``cli`` (the subcommand).
Only ``large`` and ``models`` touch torch / ouvir.export, and only inside functions.
"""
