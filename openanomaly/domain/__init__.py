"""Pure logic: pipeline spec, series batches, forecasts, scoring, time windows.

Nothing here performs I/O or imports a framework.
"""
