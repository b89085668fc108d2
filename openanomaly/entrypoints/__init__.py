"""Entry points, thin: they parse what a user or a framework hands them, get their adapters
from ``openanomaly.bootstrap`` and call services.

``cli`` is the ``openanomaly`` command; ``celery_app`` registers the Celery tasks and
settings of the distributed deployment (workers and beat); ``web`` is ``openanomaly api``
(the REST API); ``model_server`` is ``serve-model``; ``benchmark`` holds the benchmark
commands' reports; ``demo`` is ``openanomaly demo``; ``status`` reads the distributed
deployment's state from Redis.
"""
