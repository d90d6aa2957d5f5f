"""headcount's admission rule (DESIGN §3) as a pure function of counts, for local mode.

The same decision as headcount's ``decide`` (``src/domain/admission.rs``): the user's
cap first (a user's extra sessions never take places from others), then the site's
limit with its reserved places and over-limit rule, then the tenant's pool. Sessions
the request replaces free their places before any of it is judged. Both sides are
checked against one table, ``tests/admission_cases.json``.

An admission carrying one of the site's ``exempt_roles`` (service and API accounts)
is admitted before any of it is judged (``within_limit``, or ``replaced`` when it names
sessions to replace): it takes no place, evicts or replaces nothing by itself and is
never counted.

Local mode never knows the tenant's pool (the other sites' sessions live elsewhere),
so it passes ``pool=None``; the pool is enforced in central mode only.

``is_dangling`` is the agent's one definition of a dangling session (DESIGN §2), for
the local count and for the states a self-service offer shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WITHIN_LIMIT = "within_limit"
EVICTED_DANGLING = "evicted_dangling"
OVERAGE = "overage"
REPLACED = "replaced"
LIMIT_REACHED = "limit_reached"
USER_LIMIT_REACHED = "user_limit_reached"
POOL_LIMIT_REACHED = "pool_limit_reached"

ADMITTED = frozenset({WITHIN_LIMIT, EVICTED_DANGLING, OVERAGE, REPLACED})


def is_dangling(
    last_activity: dt.datetime, expires_at: dt.datetime, now: dt.datetime, idle_timeout_seconds: float
) -> bool:
    """Whether a session is dangling: not expired, and idle for ``idle_timeout_seconds`` or longer.

    headcount's rule (DESIGN §2: active and ``last_activity_at <= now - idle_timeout``), so
    that the agent's count and headcount's agree on the boundary to the second.
    """
    return expires_at > now and last_activity <= now - dt.timedelta(seconds=idle_timeout_seconds)


def overage_ceiling(limit: int, overage_percent: int | float) -> int:
    """``ceil(limit * (1 + percent / 100))`` in integers, as headcount computes it."""
    num = limit * (100 + int(overage_percent))
    return -(-num // 100)


@dataclass(frozen=True)
class UserCap:
    counted: int  # the user's sessions that count now
    limit: int
    over: str = "reject"  # or "replace_oldest"
    can_replace: bool = False  # the user has a counted session replace_oldest could end


@dataclass(frozen=True)
class Ask:
    counted: int
    limit: int
    reserve: int = 0  # reserved_slots, or 0 when the request carries a reserved role
    over_limit: str = "reject"
    overage_percent: int = 0
    can_evict: bool = False  # a dangling session exists whose eviction frees a counted place
    replacing: int = 0  # counted places the request's own ``replace`` frees
    replaces: bool = False  # the request names sessions to replace at all
    user: UserCap | None = None
    pool: tuple[int, int] | None = None  # (counted over the tenant's sites, pooled limit)
    exempt: bool = False  # the request carries one of exempt_roles: admitted, never counted


@dataclass(frozen=True)
class Decision:
    outcome: str
    replace_oldest: bool = False  # end the user's most idle counted session
    evict: bool = False  # end the site's most idle dangling session

    @property
    def admitted(self) -> bool:
        return self.outcome in ADMITTED


def _site_rule(counted: int, a: Ask) -> str:
    open_places = max(a.limit - a.reserve, 0)
    if counted < open_places:
        return WITHIN_LIMIT
    if a.over_limit == "evict_dangling":
        # an eviction frees one place: only at exactly the open places, not over them
        return EVICTED_DANGLING if a.can_evict and open_places > 0 and counted == open_places else LIMIT_REACHED
    if a.over_limit == "allow_overage":
        return OVERAGE if counted < overage_ceiling(a.limit, a.overage_percent) - a.reserve else LIMIT_REACHED
    return LIMIT_REACHED


def decide(a: Ask) -> Decision:
    if a.exempt:
        # frees nothing and needs nothing: only the sessions it names itself are ended
        return Decision(REPLACED if a.replaces else WITHIN_LIMIT)
    counted = a.counted - a.replacing
    pool = (a.pool[0] - a.replacing, a.pool[1]) if a.pool is not None else None
    replace_oldest = False
    if a.user is not None:
        user_counted = a.user.counted - a.replacing
        if user_counted >= a.user.limit:
            if a.user.over == "replace_oldest" and a.user.can_replace and a.user.limit > 0:
                replace_oldest = True
                counted -= 1
                if pool is not None:
                    pool = (pool[0] - 1, pool[1])
            else:
                return Decision(USER_LIMIT_REACHED)
    site = _site_rule(counted, a)
    if site not in ADMITTED:
        return Decision(site)
    evict = site == EVICTED_DANGLING
    if pool is not None:
        # an eviction on the same site frees a place in the pool as well
        if pool[0] + 1 - int(evict) > pool[1]:
            return Decision(POOL_LIMIT_REACHED)
    outcome = REPLACED if (replace_oldest or a.replaces) and site != OVERAGE else site
    return Decision(outcome, replace_oldest=replace_oldest, evict=evict)
