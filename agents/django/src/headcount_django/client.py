"""A small HTTP client for the headcount API (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import __version__, conf, shared

USER_AGENT = f"headcount-django/{__version__}"


class HeadcountError(Exception):
    """headcount answered, and the answer says the request itself is wrong (do not retry)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"headcount answered {status}: {detail}")
        self.status = status
        self.detail = detail


class HeadcountUnavailable(Exception):
    """headcount could not be reached or asked us to come back later (retry)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _problem_detail(raw: bytes) -> str:
    try:
        problem = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(problem, dict):
        return str(problem.get("detail") or problem.get("title") or problem)
    return str(problem)


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Response:
    """Send one request; raise HeadcountUnavailable (retry later) or HeadcountError (give up).

    A 304 is returned as a Response with no body.
    """
    data = None
    all_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        raw = exc.read() if exc.fp is not None else b""
        if exc.code == 304:
            return Response(304, {k.lower(): v for k, v in exc.headers.items()}, None)
        if exc.code in (408, 429) or exc.code >= 500:
            raise HeadcountUnavailable(
                f"headcount answered {exc.code}: {_problem_detail(raw)}", _retry_after(exc.headers)
            ) from None
        raise HeadcountError(exc.code, _problem_detail(raw)) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HeadcountUnavailable(f"headcount is unreachable: {reason}") from None
    if status == 304 or not raw:
        return Response(status, resp_headers, None)
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise HeadcountUnavailable(f"headcount answered {status} with a body that is not JSON") from None
    return Response(status, resp_headers, parsed)


def call(method: str, suffix: str, body: Any = None, *, timeout: float | None = None, headers=None) -> Response:
    """Call one of this site's endpoints (``/v1/sites/{slug}/<suffix>``) with the site token."""
    settings = conf.get()
    try:
        response = request(
            method,
            settings.site_path(suffix),
            body,
            token=settings.token,
            timeout=timeout if timeout is not None else settings.timeout,
            headers=headers,
        )
    except HeadcountError:
        _note_contact()  # it answered
        raise
    _note_contact()
    return response


# -- when headcount last answered (for the offline grace of central mode) -------------------

CONTACT_EVERY = 30.0  # seconds between writes of the time of contact, per process
_contact_written = 0.0
_contact_at: float | None = None


def _contact_key() -> str:
    return f"headcount:{conf.get().site}:contact"


def _note_contact() -> None:
    global _contact_written, _contact_at
    _contact_at = time.time()
    if time.monotonic() - _contact_written < CONTACT_EVERY and _contact_written:
        return
    _contact_written = time.monotonic()
    shared.set(_contact_key(), _contact_at, None)


def offline_seconds() -> float | None:
    """Seconds since any worker of the site last had an answer from headcount (None: never known)."""
    known = [value for value in (shared.get(_contact_key()), _contact_at) if isinstance(value, (int, float))]
    if not known:
        return None
    return max(0.0, time.time() - max(known))


def reset_contact() -> None:
    global _contact_written, _contact_at
    _contact_written, _contact_at = 0.0, None


def post_events(events: list[dict[str, Any]]) -> Response:
    return call("POST", "events", {"events": events})


def put_sessions(snapshot: dict[str, Any]) -> Response:
    return call("PUT", "sessions", snapshot)


def post_admission(body: dict[str, Any]) -> Response:
    return call("POST", "admissions", body, timeout=conf.get().admission_timeout)


def get_config(etag: str | None) -> Response:
    headers = {"If-None-Match": etag} if etag else None
    return call("GET", "config", headers=headers)
