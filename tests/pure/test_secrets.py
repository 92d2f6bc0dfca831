"""Secrets stay out of messages: masks, URL credentials and redaction of what servers echo."""

from __future__ import annotations

import pytest

from flink_llm_udf._secrets import (
    MIN_PIECE,
    Redactor,
    basic_authorization,
    mask_secret,
    mask_url_credentials,
    split_credentials,
)

KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 9 + "WXYZ"  # a 152-character project key


@pytest.mark.parametrize(
    ("secret", "masked"),
    [(None, None), ("short", "***"), ("sk-0123456789abcdefghij", "sk-…ghij"), (KEY, "sk-…WXYZ")],
)
def test_mask_secret(secret, masked):
    assert mask_secret(secret) == masked


@pytest.mark.parametrize(
    ("url", "clean", "user", "password"),
    [
        ("https://h/v1", "https://h/v1", None, None),
        ("https://u:p@h:8443/v1?x=1", "https://h:8443/v1?x=1", "u", "p"),
        ("http://user%40corp:p%3Aw%2Fd@h/v1", "http://h/v1", "user@corp", "p:w/d"),
        ("http://only-user@h/v1", "http://h/v1", "only-user", None),
    ],
)
def test_split_credentials(url, clean, user, password):
    parts = split_credentials(url)
    assert (parts.url, parts.username, parts.password) == (clean, user, password)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@h/v1", "https://u:***@h/v1"),
        ("https://u@h/v1", "https://u@h/v1"),
        ("https://h/v1", "https://h/v1"),
    ],
)
def test_mask_url_credentials(url, shown):
    assert mask_url_credentials(url) == shown


def test_basic_authorization():
    assert basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def _pieces(secret: str, text: str) -> list[str]:
    return [
        secret[i : i + MIN_PIECE]
        for i in range(len(secret) - MIN_PIECE + 1)
        if secret[i : i + MIN_PIECE] in text
    ]


@pytest.mark.parametrize(
    "echo",
    [
        KEY,  # whole
        KEY[:50],  # a server that cuts what it quotes
        KEY[40:90],  # a piece from the middle
        KEY[-20:],  # the tail
        f"Bearer {KEY}"[:60],  # the header line, cut
        f"x{KEY[10:30]}y",  # glued to other characters
    ],
)
def test_redactor_removes_the_secret_and_every_long_piece_of_it(echo):
    redactor = Redactor.of(api_key=KEY)
    message = redactor.text(f"HTTP 401: bad key {echo} (code invalid_api_key)")
    assert _pieces(KEY, message) == []
    assert message.startswith("HTTP 401: bad key ") and message.endswith("(code invalid_api_key)")


def test_redactor_keeps_the_masked_key_form_and_other_text():
    redactor = Redactor.of("a-long-password-value", api_key=KEY)
    assert redactor.text(f"got {KEY} and a-long-password-value") == "got sk-…WXYZ and ***"
    assert (
        redactor.text("nothing secret here: request_id=abc123456789")
        == "nothing secret here: request_id=abc123456789"
    )


def test_redactor_on_raw_bytes_replaces_whole_secrets_before_a_cut():
    redactor = Redactor.of("pw-0123456789", api_key=KEY)
    raw = b'{"error": "' + KEY.encode() + b" / pw-0123456789" + b'"}'
    assert redactor.raw(raw) == b'{"error": "sk-\xe2\x80\xa6WXYZ / ***"}'


def test_an_empty_redactor_changes_nothing():
    assert not Redactor.of(None, "")
    assert Redactor.of().text("sk-anything-at-all-here") == "sk-anything-at-all-here"


def test_redaction_ignores_the_case_a_server_quotes_in():
    redactor = Redactor.of(api_key=KEY)
    for echo in (KEY.upper(), KEY.lower()[20:60]):
        assert _pieces(KEY.lower(), redactor.text(f"bad key {echo}").lower()) == []
