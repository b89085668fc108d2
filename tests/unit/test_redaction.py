"""One redaction for everything shown: credentials never leave in a URL or error text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openanomaly.domain.redaction import redact


def test_credentials_in_urls_are_masked_and_the_rest_kept():
    assert redact("http://admin:hunter2@prom:9090/api") == "http://admin:***@prom:9090/api"
    assert redact("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact("https://tok3n@host/x") == "https://***@host/x"
    assert redact("GET https://h/q?query=up&token=abc123&x=1") == (
        "GET https://h/q?query=up&token=***&x=1")
    assert redact("ConnectError for http://u:p@h:1: refused") == (
        "ConnectError for http://u:***@h:1: refused")
    assert redact("Authorization: Bearer oa_abcdefghijkl") == "Authorization: Bearer ***"
    assert redact("plain text, no secret: up{job='x'}") == "plain text, no secret: up{job='x'}"


@given(st.text(alphabet=st.characters(blacklist_characters="@/:\n\t ?&#=", min_codepoint=33,
                                      max_codepoint=126), min_size=4, max_size=30))
def test_a_password_in_a_url_never_survives(password):
    shown = redact(f"failed: http://user:{password}@db.example:9090/path and more")
    assert shown == "failed: http://user:***@db.example:9090/path and more"
