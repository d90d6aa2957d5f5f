"""The webhook endpoint headcount pushes to (``site.config_changed``, ``session.kill``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import conf, config, shared
from .context import end_reason
from .sessions import delete_keys, keys_for_refs
from .webhooks import WebhookVerificationError, verify

log = logging.getLogger("headcount_django")

# headcount retries for about a day and a half; remember ids a little longer
DEDUPE_SECONDS = 3 * 24 * 3600


def _problem(status: int, title: str, detail: str) -> JsonResponse:
    return JsonResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
    )


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    settings = conf.get()
    if not settings.enabled:
        # 503, never 410: a 410 would make headcount disable the webhook for good
        return _problem(503, "Agent disabled", "the headcount agent is disabled on this site")
    body = request.body
    headers = {name: request.headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    try:
        msg_id = verify(headers, body, settings.webhook_keys, settings.webhook_tolerance)
    except WebhookVerificationError as exc:
        log.warning("headcount: refused a webhook: %s", exc)
        return _problem(401, "Invalid signature", str(exc))
    try:
        message = json.loads(body)
        kind = message["type"]
        data = message["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        return _problem(400, "Malformed webhook", f"body is not a webhook message: {exc}")
    cache = shared
    dedupe_key = f"headcount:{settings.site}:webhook:{msg_id}"
    if not cache.add(dedupe_key, 1, DEDUPE_SECONDS):
        if cache.present(dedupe_key):
            return JsonResponse({"status": "duplicate"})
        # the shared cache dropped every write of the id (shared.WRITE_ATTEMPTS): not applied,
        # and not a 2xx, so that headcount sends the push again
        log.warning("headcount: could not record webhook %s in the shared cache; asked for it again", msg_id)
        return _problem(503, "Push not recorded", "the site could not record the push; send it again")
    try:
        result = _apply(kind, data, settings)
    except ValueError as exc:
        cache.delete(dedupe_key)
        return _problem(400, "Malformed webhook", str(exc))
    except Exception:
        cache.delete(dedupe_key)  # let headcount's retry try again
        log.exception("headcount: applying webhook %s failed", msg_id)
        return _problem(500, "Webhook failed", "the site could not apply the push")
    problem = shared.problem()
    if problem:
        result["warning"] = problem
    return JsonResponse(result)


def _apply(kind: str, data: dict[str, Any], settings: conf.AgentSettings) -> dict[str, Any]:
    site = data.get("site")
    if site is not None and site != settings.site:
        raise ValueError(f"push for site {site!r}, but this is {settings.site!r}")
    if kind == "site.config_changed":
        applied = config.apply(data)
        return {"status": "applied" if applied else "ignored", "config_version": data.get("config_version")}
    if kind == "session.kill":
        refs = data.get("sessions")
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise ValueError("data.sessions must be a list of session ids")
        reason = str(data.get("reason") or "killed")
        if reason not in ("killed", "evicted", "replaced"):
            reason = "killed"
        with end_reason(reason):
            killed = delete_keys(keys_for_refs(refs))
        log.info("headcount: killed %d of %d sessions on request", killed, len(refs))
        return {"status": "applied", "killed": killed}
    log.warning("headcount: ignored a push of unknown type %r", kind)
    return {"status": "ignored", "type": kind}
