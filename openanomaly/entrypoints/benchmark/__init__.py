"""The reports of ``openanomaly benchmark``: ``models`` (speed of each model) and ``nab``
(detection quality on the Numenta Anomaly Benchmark, and the results page)."""
