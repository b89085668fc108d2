"""``openanomaly serve-model``: the configured models behind HTTP, for remote engines.

``app`` holds the FastAPI application and its endpoints (the wire protocol is described
there), ``batching`` merges concurrent requests for one model into one engine call, and
``metrics`` is the server's Prometheus exposition.
"""

from openanomaly.entrypoints.model_server.app import create_app, serve

__all__ = ["create_app", "serve"]
