"""The pipeline editor's two views of one pipeline: a form for the settings most pipelines
change, and the whole YAML document. Both post back to one YAML text, so the preview, the
inline validation and saving read either the same way."""

from __future__ import annotations

from typing import Any

import yaml
from django.http import QueryDict
from pydantic import ValidationError

from openanomaly.domain.pipeline import Direction, PipelineSpec
from openanomaly.yaml_safety import load_yaml

FORM = "form"
YAML = "yaml"
# Top-level settings the form shows as text fields; everything else stays in the YAML.
TEXT_FIELDS = ("name", "query", "model", "step", "context", "horizon", "schedule", "delay")
DIRECTIONS = [str(direction) for direction in Direction]


def parse_document(text: str) -> dict[str, Any]:
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"malformed YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("expected one pipeline: a mapping with name, query, ...")
    return raw


def parse_spec(text: str) -> PipelineSpec:
    """A pipeline from the editor's YAML; errors name the field."""
    try:
        return PipelineSpec.model_validate(parse_document(text))
    except ValidationError as exc:
        raise ValueError("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'pipeline'}: {e['msg']}"
            for e in exc.errors())) from None


def posted_text(post: QueryDict) -> str:
    """The YAML the editor holds, from whichever view posted it."""
    if post.get("view") != FORM:
        return str(post.get("yaml", ""))
    document = parse_document(post.get("rest", ""))
    for key in TEXT_FIELDS:
        value = post.get(key, "").strip()
        if value:
            document[key] = value
        else:
            document.pop(key, None)  # back to the default
    document["enabled"] = post.get("enabled") == "on"
    scoring = document.get("scoring")
    scoring = dict(scoring) if isinstance(scoring, dict) else {}
    threshold = post.get("threshold", "").strip()
    if threshold:
        scoring["threshold"] = _number(threshold)
    else:
        scoring.pop("threshold", None)
    direction = post.get("direction", "")
    if direction and direction != str(Direction.both):
        scoring["direction"] = direction
    else:
        scoring.pop("direction", None)
    if scoring:
        document["scoring"] = scoring
    else:
        document.pop("scoring", None)
    return dump(document)


def form_fields(text: str) -> dict[str, Any]:
    """What the form shows for the YAML ``text`` (which must parse)."""
    document = parse_document(text)
    scoring = document.get("scoring")
    scoring = scoring if isinstance(scoring, dict) else {}
    fields: dict[str, Any] = {key: "" if document.get(key) is None else str(document[key])
                              for key in TEXT_FIELDS}
    fields["enabled"] = document.get("enabled", True) is not False
    fields["threshold"] = "" if scoring.get("threshold") is None else str(scoring["threshold"])
    fields["direction"] = str(scoring.get("direction", Direction.both))
    return fields


def dump(document: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return text


def _number(text: str) -> float | str:
    # A number when it reads as one; otherwise the text, which validation then names.
    try:
        return float(text)
    except ValueError:
        return text
