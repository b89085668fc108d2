"""Schedulers: run each pipeline on its schedule."""
