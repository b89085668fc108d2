"""Measurements of the distributed deployment with real processes; see README."""
