"""The background sender: one daemon thread per process that batches events to headcount.

It never blocks a request: ``enqueue`` only appends to a bounded in-memory queue.
When the queue is full, activity events are dropped first (the next activity or
snapshot repairs them); a drop or a delivery outage schedules a snapshot so
headcount converges. The same thread also runs the periodic snapshot and the
config pull in processes that serve requests.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connections

from . import client, conf
from .events import ACTIVITY

log = logging.getLogger("headcount_django")

# seconds between a process's first request and its start-up snapshot
STARTUP_SNAPSHOT_DELAY = 5.0


class Sender:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.inflight: list[dict[str, Any]] = []
        self.dropped = 0
        self.sent = 0
        self.failures = 0
        self.retry_at = 0.0
        self.flush_requested = False
        self.stopping = False
        self.snapshot_wanted = False
        self.snapshot_not_before = 0.0
        self.periodic = False
        self.next_snapshot = 0.0
        self.next_config = 0.0
        self.thread: threading.Thread | None = None

    # -- called from request threads ---------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        settings = conf.get()
        with self.cond:
            if len(self.queue) >= settings.queue_size:
                self.dropped += 1
                self.snapshot_wanted = True
                if event["type"] == ACTIVITY:
                    return
                if not self._drop_oldest_activity():
                    self.queue.popleft()
            self.queue.append(event)
            self.cond.notify()
        self._ensure_thread()

    def _drop_oldest_activity(self) -> bool:
        for index, queued in enumerate(self.queue):
            if queued["type"] == ACTIVITY:
                del self.queue[index]
                return True
        return False

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was delivered (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        self._ensure_thread()
        with self.cond:
            self.flush_requested = True
            self.cond.notify_all()
            while self.queue or self.inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.1))
        return True

    def start_periodic(self) -> None:
        if not self.periodic:
            with self.cond:
                if not self.periodic:
                    self.periodic = True
                    now = time.monotonic()
                    settings = conf.get()
                    # A start-up snapshot soon after the process serves its first request, so
                    # headcount converges after a restart (the old processes' queues are gone).
                    # It is "wanted", not periodic: it skips the round lock, which processes
                    # that ran before this one may have left in the shared cache, and it is
                    # retried until headcount takes it.
                    if settings.snapshot_interval:
                        self.snapshot_wanted = True
                        self.snapshot_not_before = max(self.snapshot_not_before, now + STARTUP_SNAPSHOT_DELAY)
                        self.next_snapshot = now + settings.snapshot_interval
                    else:
                        self.next_snapshot = float("inf")
                    self.next_config = now if settings.config_interval else float("inf")
                    self.cond.notify()
        self._ensure_thread()

    def request_snapshot(self) -> None:
        with self.cond:
            self.snapshot_wanted = True
            self.cond.notify()
        self._ensure_thread()

    # -- the thread ----------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.cond:
            if self.thread is not None and self.thread.is_alive():
                return
            self.stopping = False
            self.thread = threading.Thread(target=self._run, name="headcount-sender", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._deliver(batch)
            self._periodic_tasks()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Wait for something to send; None when the thread should end."""
        settings = conf.get()
        with self.cond:
            while True:
                now = time.monotonic()
                if self.stopping and (not self.queue or self.failures):
                    return None
                due = self._periodic_due(now)
                if self.queue and now >= self.retry_at:
                    oldest_age = now - self.queue[0].get("_queued", now)
                    if (
                        self.flush_requested
                        or self.stopping
                        or len(self.queue) >= settings.batch_size
                        or oldest_age >= settings.flush_interval
                    ):
                        count = min(settings.batch_size, len(self.queue))
                        self.inflight = [self.queue.popleft() for _ in range(count)]
                        return self.inflight
                    wait = settings.flush_interval - oldest_age
                elif self.queue:
                    if self.flush_requested and not self.failures:
                        self.retry_at = now
                        continue
                    wait = self.retry_at - now
                else:
                    self.flush_requested = False
                    wait = 1.0
                if due:
                    return []
                self.cond.wait(max(0.01, min(wait, 1.0)))

    def _wanted_snapshot_due(self, now: float) -> bool:
        return (
            self.snapshot_wanted
            and self.failures == 0
            and now >= self.snapshot_not_before
            and (self.periodic or not self.queue)
        )

    def _periodic_due(self, now: float) -> bool:
        if self._wanted_snapshot_due(now):
            return True
        return self.periodic and (now >= self.next_snapshot or now >= self.next_config)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        settings = conf.get()
        body = [{k: v for k, v in event.items() if not k.startswith("_")} for event in batch]
        try:
            response = client.post_events(body)
        except client.HeadcountUnavailable as exc:
            with self.cond:
                self.failures += 1
                delay = exc.retry_after
                if delay is None:
                    delay = min(settings.retry_max_delay, 2 ** min(self.failures - 1, 10))
                    delay *= random.uniform(0.8, 1.2)
                self.retry_at = time.monotonic() + delay
                # back in front, in order; the bound still applies, activity goes first
                self.queue.extendleft(reversed(batch))
                self._trim()
                self.inflight = []
                self.snapshot_wanted = True
                self.cond.notify_all()
            log.warning("headcount: %d events not delivered, retrying in %.1fs: %s", len(batch), delay, exc)
            return
        except client.HeadcountError as exc:
            log.error("headcount refused a batch of %d events, dropping it: %s", len(batch), exc)
            with self.cond:
                self.dropped += len(batch)
                self.inflight = []
                self.cond.notify_all()
            return
        rejected = (response.body or {}).get("rejected") if isinstance(response.body, dict) else None
        if rejected:
            log.warning("headcount rejected %d of %d events: %s", len(rejected), len(batch), rejected[:5])
        with self.cond:
            self.sent += len(batch)
            self.failures = 0
            self.retry_at = 0.0
            self.inflight = []
            self.cond.notify_all()

    def _trim(self) -> None:
        limit = conf.get().queue_size
        while len(self.queue) > limit:
            self.dropped += 1
            if not self._drop_oldest_activity():
                self.queue.popleft()

    def _periodic_tasks(self) -> None:
        from . import config, snapshot  # late: they import Django models

        settings = conf.get()
        now = time.monotonic()
        with self.cond:
            run_snapshot = (self.periodic and now >= self.next_snapshot) or self._wanted_snapshot_due(now)
            run_config = self.periodic and now >= self.next_config
            if run_snapshot:
                forced = self.snapshot_wanted
                self.snapshot_wanted = False
                self.next_snapshot = now + (settings.snapshot_interval or float("inf"))
            if run_config:
                self.next_config = now + (settings.config_interval or float("inf"))
        if not (run_snapshot or run_config):
            return
        try:
            close_old_connections()
            if run_config and settings.enabled and settings.mode == "local":
                _guard("config pull", config.pull)
            if run_snapshot and settings.enabled:
                ok = _guard("snapshot", lambda: snapshot.send(periodic=not forced))
                if ok is False:
                    with self.cond:
                        self.snapshot_wanted = True
                        self.snapshot_not_before = time.monotonic() + min(30.0, settings.retry_max_delay)
        finally:
            connections.close_all()

    def stop(self, timeout: float) -> None:
        """Deliver what is queued (one try, bounded by timeout) and end the thread."""
        thread = self.thread
        if thread is None or not thread.is_alive() or os.getpid() != self.pid:
            return
        with self.cond:
            self.stopping = True
            self.retry_at = 0.0
            self.failures = 0
            self.cond.notify_all()
        thread.join(timeout)


def _guard(what: str, func: Callable[[], Any]) -> Any:
    try:
        return func()
    except (client.HeadcountUnavailable, client.HeadcountError) as exc:
        log.warning("headcount: %s failed: %s", what, exc)
        return False
    except Exception:
        log.exception("headcount: %s failed", what)
        return False


_sender: Sender | None = None
_sender_lock = threading.Lock()


def get_sender() -> Sender:
    """The process's sender; a forked worker gets a fresh one (threads do not survive fork)."""
    global _sender
    current = _sender
    if current is None or current.pid != os.getpid():
        with _sender_lock:
            if _sender is None or _sender.pid != os.getpid():
                _sender = Sender()
            current = _sender
    return current


def make_event(event_type: str, ref: str | None, **fields: Any) -> dict[str, Any]:
    """One event; ``ref`` (the hashed session id) may be None for ``session.refused``."""
    from .sessions import now, rfc3339

    event: dict[str, Any] = {"id": uuid.uuid4().hex, "type": event_type}
    if ref is not None:
        event["session"] = ref
    event["at"] = rfc3339(fields.pop("at", None) or now())
    event["_queued"] = time.monotonic()
    for key, value in fields.items():
        if value is not None:
            event[key] = value
    return event


def enqueue(event: dict[str, Any]) -> None:
    try:
        get_sender().enqueue(event)
    except Exception:  # reporting must never fail a request
        log.exception("headcount: could not queue an event")


def flush(timeout: float = 10.0) -> bool:
    return get_sender().flush(timeout)


def reset() -> None:
    """Forget queued events and state (for tests)."""
    sender = get_sender()
    with sender.cond:
        sender.queue.clear()
        sender.dropped = 0
        sender.failures = 0
        sender.retry_at = 0.0
        sender.snapshot_wanted = False
        sender.cond.notify_all()


def _on_sigterm(signum: int, frame: Any) -> None:
    """Deliver the queue first (bounded by SHUTDOWN_TIMEOUT), then do what SIGTERM did before.

    Lino's own handler raises SystemExit wherever the worker is; under gunicorn a worker
    caught in a request then swallows it, lingers until the graceful timeout and is
    killed, and atexit never runs. Flushing here, before that handler, keeps the queue.
    """
    previous = _previous_sigterm.get(os.getpid(), signal.SIG_DFL)
    try:
        sender = _sender
        if sender is not None and sender.pid == os.getpid():
            sender.flush(conf.get().shutdown_timeout)
    except Exception:
        pass
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_previous_sigterm: dict[int, Any] = {}


def hook_sigterm() -> None:
    """Put ``_on_sigterm`` in front of the process's SIGTERM handler (main thread only, idempotent)."""
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN or current is None:
        return
    _previous_sigterm[os.getpid()] = current
    signal.signal(signal.SIGTERM, _on_sigterm)


@atexit.register
def _flush_at_exit() -> None:
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return
    try:
        sender.stop(conf.get().shutdown_timeout)
    except Exception:
        pass
