"""The composition root: real adapters by default, fakes where a test passes them."""

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.bootstrap import bootstrap, bootstrap_worker
from openanomaly.config import AppConfig
from openanomaly.services.slot_workflow import Delivery

from .fakes import FakeLedger, FakeTSDB
from .test_runs import ENGINE, STEP, T0, N, periodic, spec


class Closable:
    closed = False

    def close(self):
        self.closed = True


class ClosableTSDB(FakeTSDB, Closable):
    pass


class ClosableEngine(Closable):
    def forecast(self, model, request):
        return ENGINE.forecast(model, request)


def test_the_real_adapters_follow_the_configuration():
    config = AppConfig.model_validate({"inference": {"cache_mb": 64},
                                       "prometheus": {"url": "http://127.0.0.1:9"}})
    app = bootstrap(config)
    try:
        assert isinstance(app.tsdb, PrometheusAdapter)
        assert isinstance(app.engine, LocalModelEngine)
        assert app.engine.cache_bytes == 64 * 2**20
        assert isinstance(app.store, YamlConfigStore)
    finally:
        app.close()


def test_passed_adapters_are_used_and_closed_with_the_app():
    tsdb, engine = ClosableTSDB([periodic({})]), ClosableEngine()
    app = bootstrap(AppConfig(), tsdb=tsdb, engine=engine, store=YamlConfigStore([spec()]))
    result = app.run(app.store.get_pipeline("p"), T0 + (N - 1) * STEP)
    assert result.status == "ok" and tsdb.write_calls == 1
    app.close()
    assert tsdb.closed and engine.closed, "closing the app closes the engine too"


def test_a_worker_runs_slots_through_its_ledger_with_a_claim_beyond_the_time_limit():
    ledger = FakeLedger()
    config = AppConfig.model_validate({"scheduler": {"task_soft_time_limit": 50,
                                                     "task_time_limit": 100}})
    worker = bootstrap_worker(config, tsdb=FakeTSDB([periodic({})]), engine=ENGINE,
                              store=YamlConfigStore([spec()]), ledger=ledger)
    assert worker.claim_ttl_ms == (100 + 60) * 1000
    at = T0 + (N - 1) * STEP
    assert worker.execute(Delivery("p", at, None, "task-1"))["status"] == "ok"
    assert ledger.done("p", at)
