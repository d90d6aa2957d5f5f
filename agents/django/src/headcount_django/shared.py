"""The cache the worker processes share (``HEADCOUNT["CACHE"]``), and what the agent does when it fails.

A site's own maintenance can take the cache away: rebuilding the database (Lino's
``prep`` or ``initdb``, a restore) drops the table of a database cache, and only
``manage.py createcachetable`` brings it back. A sign-in or a push must never fail
for that. While the shared cache cannot be used, each process keeps what it needs
in its own memory (the last config it saw, the push ids it applied), logs one error
that names the fix, and tries the shared cache again at most once a minute (a failed
query is not repeated at every request). ``problem()`` tells ``headcount_check``
and the webhook's answer what is wrong.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.db import BaseDatabaseCache
from django.db import connections, router, transaction

from . import conf

log = logging.getLogger("headcount_django")

RETRY_AFTER = 60.0

_lock = threading.Lock()
_memory: dict[str, tuple[float | None, Any]] = {}
_failed_at: float | None = None
_problem: str | None = None
_logged = False


def fix_for(alias: str) -> str:
    backend = _backend(alias)
    if backend.endswith("DatabaseCache"):
        return "manage.py createcachetable"
    return f"make the cache {alias!r} ({backend}) reachable"


def _backend(alias: str) -> str:
    from django.conf import settings

    return str((getattr(settings, "CACHES", {}).get(alias) or {}).get("BACKEND", ""))


def describe(alias: str, exc: BaseException) -> str:
    return (
        f"the cache {alias!r} that the worker processes share cannot be used ({type(exc).__name__}: {exc}); "
        f"fix: {fix_for(alias)}"
    )


def _failed(exc: BaseException) -> None:
    global _failed_at, _problem, _logged
    alias = conf.get().cache_alias
    with _lock:
        _failed_at = time.monotonic()
        _problem = describe(alias, exc)
        first = not _logged
        _logged = True
    if first:
        log.error(
            "headcount: %s. Until then each worker process decides with what it holds itself "
            "(the last config it saw); a push reaches only the worker that receives it.",
            _problem,
        )


def _usable() -> bool:
    with _lock:
        return _failed_at is None or time.monotonic() - _failed_at >= RETRY_AFTER


def _recovered() -> None:
    global _failed_at, _problem, _logged
    if _failed_at is None:
        return
    with _lock:
        if _failed_at is not None:
            log.warning("headcount: the shared cache works again")
        _failed_at = None
        _problem = None
        _logged = False


def problem() -> str | None:
    """What is wrong with the shared cache, as this process last found it (None: nothing known)."""
    return _problem


def check() -> str | None:
    """Try the shared cache now; the problem, or None when it works."""
    alias = conf.get().cache_alias
    try:
        caches[alias].get("headcount:check")
    except Exception as exc:
        return describe(alias, exc)
    return None


def _expired(entry: tuple[float | None, Any]) -> bool:
    return entry[0] is not None and entry[0] <= time.monotonic()


def _call(method: str, *args: Any) -> tuple[bool, Any]:
    if not _usable():
        return False, None
    try:
        cache = caches[conf.get().cache_alias]
        database = _database_of(cache)
        if database is not None and connections[database].in_atomic_block:
            # a failed query must not spoil the request's transaction (PostgreSQL): a savepoint
            with transaction.atomic(using=database):
                result = getattr(cache, method)(*args)
        else:
            result = getattr(cache, method)(*args)
    except Exception as exc:
        _failed(exc)
        return False, None
    _recovered()
    return True, result


def _database_of(cache: Any) -> str | None:
    if not isinstance(cache, BaseDatabaseCache):
        return None
    return router.db_for_write(cache.cache_model_class)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def get(key: str, default: Any = None) -> Any:
    ok, value = _call("get", key, default)
    if ok:
        if value is not default:
            with _lock:
                # what this process last saw: it decides with that if the shared cache fails
                _memory[key] = (None, value)
        return value
    with _lock:
        entry = _memory.get(key)
        return default if entry is None or _expired(entry) else entry[1]


# A database cache drops a write that fails: Django's DatabaseCache swallows the DatabaseError and
# its add() answers False, as if the key were there. On SQLite that happens whenever another worker
# commits a write at the same moment ("database is locked" at once, no waiting, for a write in a
# transaction whose first read saw the database before that commit). So a write is read back, and
# tried again this many times when it did not take.
WRITE_ATTEMPTS = 5

_ABSENT = object()


def set(key: str, value: Any, timeout: float | None) -> bool:  # noqa: A001 (the cache's own name)
    """Store a value; False only when the shared cache works but did not keep it (after retries).

    While the shared cache cannot be used, the process's memory holds the value: True.
    """
    with _lock:
        # kept in memory as well: the process decides with it if the shared cache fails later
        _memory[key] = (_deadline(timeout), value)
    for _ in range(WRITE_ATTEMPTS):
        ok, _ = _call("set", key, value, timeout)
        if ok:
            ok, stored = _call("get", key, _ABSENT)
        if not ok or stored == value:
            return True
    log.warning("headcount: the shared cache did not keep %s after %d writes", key, WRITE_ATTEMPTS)
    return False


def add(key: str, value: Any, timeout: float | None) -> bool:
    """Store a value unless the key is there; True when this call stored it.

    False means the key is there, or, rarely, that the shared cache dropped every write
    (``present`` tells the two apart).
    """
    for _ in range(WRITE_ATTEMPTS):
        ok, added = _call("add", key, value, timeout)
        if ok and added:
            return True
        if ok:
            # False: taken, or a dropped write (see WRITE_ATTEMPTS); only a key that is there is taken
            ok, found = _call("get", key, _ABSENT)
            if ok and found is not _ABSENT:
                return False
            if ok:
                continue
        with _lock:
            entry = _memory.get(key)
            if entry is not None and not _expired(entry):
                return False
            _memory[key] = (_deadline(timeout), value)
            return True
    log.warning("headcount: the shared cache did not keep %s after %d writes", key, WRITE_ATTEMPTS)
    return False


def present(key: str) -> bool:
    """Whether the key is there (in the shared cache, or in this process's memory while it fails)."""
    return get(key, _ABSENT) is not _ABSENT


def incr(key: str, timeout: float | None) -> None:
    """Add one to a counter (created at 0 with ``timeout``); not atomic across processes in every cache."""
    add(key, 0, timeout)
    ok, _ = _call("incr", key)
    if not ok:
        with _lock:
            deadline, value = _memory.get(key, (_deadline(timeout), 0))
            _memory[key] = (deadline, (value if isinstance(value, int) else 0) + 1)


def delete(key: str) -> None:
    with _lock:
        _memory.pop(key, None)
    _call("delete", key)


def reset() -> None:
    """Forget the process's memory and any failure (tests)."""
    global _failed_at, _problem, _logged
    with _lock:
        _memory.clear()
        _failed_at = None
        _problem = None
        _logged = False
