"""Labelled data sets read from disk, for benchmarks."""
