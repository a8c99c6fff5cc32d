"""Secrets never shown: URIs are printed and logged with their password and token values replaced by ``***``.

``redact_uri('http://user:pass@host:5000/x?token=abc&page=2')`` -> ``'http://user:***@host:5000/x?token=***&page=2'``.
A URI that holds no secret comes back unchanged, and so do ``sqlite:`` and ``file:`` URIs (a path, never a
secret). ``redact_text`` applies it to every URI inside a message (an exception's text, a log line), and
``RedactingFilter`` to every log record a handler emits.

(Named ``redact``, not ``secrets``: a module named like the standard library's ``secrets`` would shadow it
for any script run from this folder.)
"""
from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Redaction never changes a job's outputs: editing this module re-runs no job (pipeline_src/codedeps.py).
AFFECTS_OUTPUTS = False

MASK = "***"
# query keys whose value is a credential (matched case-insensitively, also as a suffix: access_token, x-api-key)
SECRET_KEYS = re.compile(r"(?:^|[_\-.])(?:token|password|passwd|pwd|secret|key|apikey|api_key|auth|authorization|"
                         r"credential|credentials|signature|sig|session|sessionid|code)$", re.IGNORECASE)
_PLAIN_SCHEMES = ("sqlite", "file")
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def _is_secret_key(key: str) -> bool:
    return bool(SECRET_KEYS.search(key))


def _redact_pair(piece: str) -> str:
    """One ``key=value`` of a query string, its value masked if the key names a credential (text kept as is)."""
    key, eq, _ = piece.partition("=")
    return f"{key}={MASK}" if eq and _is_secret_key(unquote_plus(key)) else piece


def redact_uri(uri: str) -> str:
    """The URI with its password (or a user-only credential such as ``https://TOKEN@host``) and the values of
    secret-looking query parameters replaced by ``***``; sqlite/file URIs and URIs without secrets unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unbalanced '[' in the host: not a URI we can take apart, so hide it all
        return MASK
    if parts.scheme.lower() in _PLAIN_SCHEMES:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"  # a bare user field is often a token
    query = "&".join(_redact_pair(piece) for piece in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URI in it passed through ``redact_uri`` (for messages that quote a URI)."""
    return _URI.sub(lambda m: redact_uri(m.group(0)), str(text))


def browser_url(uri: str) -> str:
    """What to open in a browser for an http(s) tracking server: no user, password or secret query values."""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(p for p in parts.query.split("&") if p and _redact_pair(p) == p)
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every URI in a record's final message (its own and its arguments')."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger), so that log lines
    of every library (MLflow, urllib3, ...) are redacted too. Idempotent."""
    logger = logger or logging.getLogger()
    flt = next((f for h in logger.handlers for f in h.filters if isinstance(f, RedactingFilter)), RedactingFilter())
    for handler in logger.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    return flt
