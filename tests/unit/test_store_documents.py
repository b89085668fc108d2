"""Stored and exported forms of a pipeline."""

import pytest

from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.store import SCHEMA_VERSION, pipeline_document, pipeline_from_document
from openanomaly.services.pipeline_admin import export_document

SPEC = PipelineSpec(name="cpu", query="up", step="30s", context="6h30m", delay="30s",
                    scoring={"calibration_window": "14d", "suppression_window": None})


def test_a_stored_document_reads_back_as_the_same_spec():
    assert pipeline_from_document(pipeline_document(SPEC), SCHEMA_VERSION) == SPEC


def test_a_document_from_a_newer_release_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"stored by a newer release .* upgrade first"):
        pipeline_from_document(pipeline_document(SPEC), SCHEMA_VERSION + 1)


def test_export_writes_durations_as_a_user_would_and_only_what_differs():
    document = export_document(SPEC)
    assert document["step"] == "30s" and document["context"] == "6h30m"
    assert document["delay"] == "30s"
    assert document["scoring"] == {"calibration_window": "14d", "suppression_window": None}
    assert "model" not in document and "enabled" not in document
    assert PipelineSpec.model_validate(document) == SPEC
