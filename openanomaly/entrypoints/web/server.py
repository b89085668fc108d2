"""`openanomaly api`: the web service under gunicorn (or any WSGI server)."""

from __future__ import annotations

import logging
from typing import Any

from openanomaly.bootstrap import (
    ApiContext,
    bootstrap_api,
    process_exited,
    use_multiprocess,
    web_cache,
)
from openanomaly.config import AppConfig
from openanomaly.entrypoints.web import state
from openanomaly.entrypoints.web.settings import configure, django_settings

log = logging.getLogger(__name__)


def wsgi_application(config: AppConfig, context: ApiContext) -> Any:
    """Django's WSGI handler for this configuration and these adapters. Django and the API
    modules are imported only after their settings exist."""
    configure(config, web_cache(config))
    state.use(context)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def serve(config: AppConfig, workers: int, host: str, port: int) -> None:
    """Serve under gunicorn until SIGTERM (workers finish their requests first)."""
    from gunicorn.app.base import BaseApplication

    # Refuse a bad configuration here, once, rather than in every worker.
    django_settings(config, web_cache(config))
    bootstrap_api(config).close()
    # gunicorn's workers each count their requests; any of them serves the sum.
    use_multiprocess()

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("child_exit", lambda _arbiter, worker: process_exited(worker.pid))

        def load(self) -> Any:
            # Each worker builds its own adapters: database clients and models are not
            # shared across fork.
            return wsgi_application(config, bootstrap_api(config))

    log.info("api listening", extra={"url": f"http://{host}:{port}", "workers": workers})
    Server().run()
