"""OpenAnomaly: zero-shot anomaly detection for Prometheus-compatible metrics."""

__version__ = "0.1.0"
