"""The dashboards of deploy/grafana, as code (grafana-foundation-sdk builders)."""
