import pytest

from openanomaly.domain.errors import PipelineError
from openanomaly.domain.output import check_unique, output_labels
from openanomaly.domain.pipeline import PipelineSpec

SPEC = PipelineSpec(name="p1", query="up", model="fracast",
                    output={"extra_labels": {"team": "sre"}})


def test_source_labels_kept_and_ours_added():
    labels = output_labels({"__name__": "http_requests", "job": "api", "instance": "a:80"}, SPEC)
    assert labels == {"job": "api", "instance": "a:80", "source_metric": "http_requests",
                      "pipeline": "p1", "model": "fracast", "team": "sre"}


def test_clashing_source_labels_are_kept_as_exported():
    labels = output_labels({"__name__": "m", "pipeline": "theirs", "model": "x",
                            "quantile": "0.99", "team": "db"}, SPEC)
    assert labels["pipeline"] == "p1" and labels["exported_pipeline"] == "theirs"
    assert labels["exported_model"] == "x"
    assert labels["exported_quantile"] == "0.99"
    assert labels["exported_team"] == "db" and labels["team"] == "sre"


def test_series_without_a_name_get_no_source_metric():
    assert "source_metric" not in output_labels({"job": "api"}, SPEC)


def test_colliding_outputs_are_refused():
    with pytest.raises(PipelineError, match="same output labels"):
        check_unique([{"a": "1"}, {"a": "1"}], SPEC)
