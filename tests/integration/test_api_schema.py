"""Schemathesis over the API's OpenAPI document: generated requests to every operation, as
an admin, and no answer may be a server error."""

from __future__ import annotations

import mongomock
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from openanomaly.adapters.config.mongo_store import MongoStore
from openanomaly.adapters.passwords import DjangoPasswordHasher
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.bootstrap import bootstrap_api
from openanomaly.entrypoints.web.server import wsgi_application
from openanomaly.services.accounts import create_user, issue_token
from tests.integration.test_api import CONFIG, PASSWORD


@pytest.fixture(scope="module")
def served(prometheus):
    """The WSGI app on a store with one admin, and that admin's token."""
    store = MongoStore(mongomock.MongoClient()["schema"])
    context = bootstrap_api(CONFIG, store=store, hasher=DjangoPasswordHasher(),
                            tsdb=PrometheusAdapter(PrometheusSettings(url=prometheus.url)))
    app = wsgi_application(CONFIG, context)
    create_user(store, context.hasher, "admin", "admin", PASSWORD)
    yield app, issue_token(store, "admin", "schemathesis")[1]
    context.close()


def test_no_input_makes_the_api_fail_with_a_server_error(served):
    app, token = served
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app,
                                            headers={"Authorization": f"Bearer {token}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        # Plain Hypothesis over each operation's strategy (the pytest plugin's lazy loading
        # does not run on this pytest).
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def one(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error])

        one()
