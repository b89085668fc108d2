"""Entry points: the command line (and later the API, Celery app and model server)."""
