"""Workflows written against the ports: runs, backfill."""
