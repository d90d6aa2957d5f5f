"""What the agent remembers during one request, in context variables.

The signal receivers (``reporting``) run inside the code that saves, deletes and
signs in; they learn why a session is being deleted, and what this request reported
already, from here:

- ``end_reason("killed")``: deletions inside it are reported with that reason (a kill,
  an eviction, a replacement) instead of being guessed;
- ``suppress_created()``: rows created inside it are not reported as key rotations
  (the caller reports the session itself);
- ``state()``: the request's own record (``RequestState``), dropped by ``finish()``
  when the request ends.

Context variables rather than a thread-local: they follow the request into
``sync_to_async`` and back under ASGI, and a context manager restores the previous
value even when one is nested in another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestState:
    """This request's record of what it reported, by hashed session id."""

    # sessions whose end was reported already (a logout, then the row's deletion: one event)
    ended: set[str] = field(default_factory=set)
    # sessions whose start was reported, with when (monotonic): their new row is no rotation
    created: dict[str, float] = field(default_factory=dict)
    # the user whose session key this request rotated, and when (monotonic): the old row's
    # deletion that follows is a logout of the old key, not a kill
    rotating_user: tuple[str, float] | None = None
    # admissions headcount granted in this request whose sign-in has not completed (central mode)
    pending: set[str] = field(default_factory=set)


# None, never a shared default: each request gets a fresh RequestState (see ``state``)
_state: ContextVar[RequestState | None] = ContextVar("headcount_request_state", default=None)
_end_reason: ContextVar[str | None] = ContextVar("headcount_end_reason", default=None)
_suppress_created: ContextVar[bool] = ContextVar("headcount_suppress_created", default=False)


def state() -> RequestState:
    """This request's record, created at first use."""
    current = _state.get()
    if current is None:
        current = RequestState()
        _state.set(current)
    return current


def finish() -> RequestState | None:
    """At the end of a request: the record it left (None: nothing recorded), forgotten from now on."""
    current = _state.get()
    _state.set(None)
    return current


@contextmanager
def end_reason(reason: str) -> Iterator[None]:
    """Deletions of signed-in sessions inside this block are reported as ``session.ended`` with ``reason``."""
    token = _end_reason.set(reason)
    try:
        yield
    finally:
        _end_reason.reset(token)


def current_end_reason() -> str | None:
    return _end_reason.get()


@contextmanager
def suppress_created() -> Iterator[None]:
    """Rows created inside this block are not reported as rotations: the caller reports the session."""
    token = _suppress_created.set(True)
    try:
        yield
    finally:
        _suppress_created.reset(token)


def created_suppressed() -> bool:
    return _suppress_created.get()
