"""scheduler: the Celery time limits, the retry backoff cap and the visibility timeout."""

import pytest
from celery import Celery

from openanomaly.config import AppConfig, SchedulerSettings, load_config
from openanomaly.domain.errors import ConfigError, QueryRejected, TSDBUnavailable
from openanomaly.entrypoints.celery_app import _TASK_OPTIONS, celery_settings, retry_or_raise


def load(tmp_path, text, environ=None):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, environ=environ or {})


def test_defaults_keep_the_visibility_timeout_beyond_a_retried_run():
    scheduler = SchedulerSettings()
    assert scheduler.retry_backoff_max == 300
    assert scheduler.visibility_timeout == 360 + 300 + 300
    transport = celery_settings(AppConfig())["broker_transport_options"]
    assert transport["visibility_timeout"] == 960


def test_default_visibility_timeout_follows_the_configured_limits(tmp_path):
    config = load(tmp_path, "scheduler:\n  task_soft_time_limit: 20\n  task_time_limit: 25\n"
                            "  retry_backoff_max: 5\n",
                  environ={"OPENANOMALY__SCHEDULER__TASK_TIME_LIMIT": "40"})
    assert config.scheduler.visibility_timeout == 40 + 5 + 300
    settings = celery_settings(config)
    assert settings["broker_transport_options"]["visibility_timeout"] == 345
    assert settings["task_annotations"] == {"*": {"retry_backoff_max": 5, "max_retries": 5}}


def test_explicit_visibility_timeout_is_used(tmp_path):
    config = load(tmp_path, "scheduler:\n  task_soft_time_limit: 20\n  task_time_limit: 25\n"
                            "  retry_backoff_max: 5\n  visibility_timeout: 31\n")
    assert config.scheduler.visibility_timeout == 31
    assert celery_settings(config)["broker_transport_options"]["visibility_timeout"] == 31


@pytest.mark.parametrize(("text", "expected"), [
    ("scheduler:\n  task_time_limit: 60\n  task_soft_time_limit: 20\n"
     "  retry_backoff_max: 10\n  visibility_timeout: 70\n",
     "scheduler: visibility_timeout (70 s) must exceed task_time_limit + retry_backoff_max "
     "(70 s)"),
    ("scheduler:\n  visibility_timeout: 600\n",
     "visibility_timeout (600 s) must exceed task_time_limit + retry_backoff_max (660 s)"),
    ("scheduler:\n  task_soft_time_limit: 360\n",
     "scheduler: task_soft_time_limit (360 s) must be below task_time_limit (360 s)"),
    ("scheduler:\n  retry_backoff_max: 0\n", "scheduler.retry_backoff_max: Input should be "
                                             "greater than 0"),
    ("scheduler:\n  visibility_timeout: -1\n", "scheduler.visibility_timeout: Input should be "
                                               "greater than 0"),
])
def test_limits_out_of_order_are_refused(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert expected in str(caught.value)


def test_the_message_says_why_the_visibility_timeout_must_be_longer(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "scheduler:\n  visibility_timeout: 100\n")
    message = str(caught.value)
    assert "Redis hands a message unacknowledged for longer than visibility_timeout to a " \
           "second worker" in message
    assert "while the first still runs or retries it" in message


def test_the_configured_retry_policy_reaches_the_retrying_task(monkeypatch):
    caps = []

    def backoff(**kwargs):
        caps.append(kwargs["maximum"])
        return 0

    monkeypatch.setattr("openanomaly.entrypoints.celery_app.get_exponential_backoff_interval",
                        backoff)
    config = AppConfig(scheduler=SchedulerSettings(retry_backoff_max=7, max_retries=2))
    app = Celery("test-backoff", set_as_current=False)
    app.conf.update(celery_settings(config), task_always_eager=True)
    calls = []

    def flaky(self, error):
        calls.append(error)
        try:
            raise {"down": TSDBUnavailable("database down"),
                   "bad": QueryRejected("parse error"), "bug": ValueError("bug")}[error]
        except Exception as exc:
            retry_or_raise(self, exc)

    task = app.task(name="test.flaky", **_TASK_OPTIONS)(flaky)
    result = task.apply(args=["down"])
    assert isinstance(result.result, TSDBUnavailable)
    assert caps == [7, 7, 7], "each retry's countdown is capped by the configured value"
    assert calls == ["down"] * 3, "the first try and max_retries=2 retries"
    # Errors whose class says retrying cannot help, and errors of unknown kind, fail at once.
    for error, kind in (("bad", QueryRejected), ("bug", ValueError)):
        calls.clear()
        assert isinstance(task.apply(args=[error]).result, kind)
        assert calls == [error]
    app.close()
