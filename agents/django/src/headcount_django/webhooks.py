"""Standard Webhooks signature verification (pure functions, no Django)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping


class WebhookVerificationError(Exception):
    pass


def sign(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (used by the tests, too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    headers: Mapping[str, str],
    body: bytes,
    keys: Iterable[bytes],
    tolerance: float = 300,
    now: float | None = None,
) -> str:
    """Check the signature headers of a push; return the ``webhook-id``.

    ``headers`` maps lower-case header names to values. Any of the space-separated
    ``v1,`` signatures made with any of the keys is accepted (secrets rotate).
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if sent_at < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if sent_at > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")
    offered = []
    for part in signatures.split(" "):
        version, _, value = part.partition(",")
        if version == "v1" and value:
            offered.append(value)
    if not offered:
        raise WebhookVerificationError("no v1 signature in webhook-signature")
    for key in keys:
        expected = sign(key, msg_id, timestamp, body).partition(",")[2]
        for value in offered:
            if hmac.compare_digest(expected.encode(), value.encode()):
                return msg_id
    raise WebhookVerificationError("no signature matches")
