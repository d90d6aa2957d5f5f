"""A short flow against a live headcount through the Python client generated from
openapi/openapi.json: plan, tenant, site, site token, events, usage, sessions, billing.
Run by .ci/openapi-check; reads HEADCOUNT_URL and HEADCOUNT_ADMIN_TOKEN. Any answer that
is not the expected one ends it with a traceback and a non-zero exit."""

import json
import os
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

from headcount_client import AuthenticatedClient
from headcount_client.api.agent import ingest_events
from headcount_client.api.billing import export_billing
from headcount_client.api.plans import create_plan, list_plans
from headcount_client.api.sessions import list_sessions
from headcount_client.api.sites import create_site
from headcount_client.api.tenants import create_tenant
from headcount_client.api.tokens import create_token
from headcount_client.api.usage import get_site_usage, get_tenant_usage
from headcount_client.models import (
    BatchResult,
    BillingExport,
    CreatedSite,
    CreatedTenant,
    CreatePlan,
    CreateSite,
    CreateTenant,
    CreateToken,
    Event,
    EventBatch,
    PagePlanView,
    PageSessionView,
    PlanView,
    Problem,
    Role,
    SessionState,
    SiteUsage,
    TenantUsage,
    TokenView,
)

URL = os.environ["HEADCOUNT_URL"]
ADMIN = os.environ["HEADCOUNT_ADMIN_TOKEN"]
PLAN, TENANT, SITE = "ci-basic", "ci-tenant", "ci-site"


def call(endpoint, want_status, want_type, **kwargs):
    """One request through the generated `sync_detailed`; checks status and parsed type."""
    r = endpoint.sync_detailed(**kwargs)
    name = endpoint.__name__.rsplit(".", 1)[-1]
    assert r.status_code == want_status, (
        f"{name}: {int(r.status_code)} instead of {int(want_status)}: {r.content[:500]!r}"
    )
    assert isinstance(r.parsed, want_type), (
        f"{name}: parsed as {type(r.parsed).__name__}, not {want_type.__name__}"
    )
    print(f"{name}: {int(r.status_code)}")
    return r.parsed


admin = AuthenticatedClient(base_url=URL, token=ADMIN, raise_on_unexpected_status=True)

plan = call(
    create_plan,
    HTTPStatus.CREATED,
    PlanView,
    client=admin,
    body=CreatePlan(code=PLAN, name="CI basic", session_limit=5, monthly_price_cents=1000),
)
assert plan.code == PLAN and plan.session_limit == 5, plan
plans = call(list_plans, HTTPStatus.OK, PagePlanView, client=admin)
assert [p.code for p in plans.items] == [PLAN], plans

tenant = call(
    create_tenant,
    HTTPStatus.CREATED,
    CreatedTenant,
    client=admin,
    body=CreateTenant(slug=TENANT, name="CI tenant", billing_email="ci@example.com"),
)
assert tenant.slug == TENANT and tenant.notify_secret.startswith("whsec_"), tenant

site = call(
    create_site,
    HTTPStatus.CREATED,
    CreatedSite,
    client=admin,
    body=CreateSite(slug=SITE, tenant=TENANT, name="CI site", plan=PLAN),
)
assert site.slug == SITE and site.webhook_secret.startswith("whsec_"), site

# A second create of the same slug is a typed problem.
dup = call(
    create_site,
    HTTPStatus.CONFLICT,
    Problem,
    client=admin,
    body=CreateSite(slug=SITE, tenant=TENANT, name="CI site", plan=PLAN),
)
assert dup.status == 409, dup

minted = call(
    create_token,
    HTTPStatus.CREATED,
    TokenView,
    client=admin,
    body=CreateToken(role=Role.SITE, site=SITE),
)
assert minted.token and minted.jti, minted
agent = AuthenticatedClient(base_url=URL, token=minted.token, raise_on_unexpected_status=True)

# Three sessions start, one ends, and one event is out of range (rejected on its own).
now = datetime.now(timezone.utc)
base = now - timedelta(seconds=4)
if base.month != now.month:  # keep every event in the billed month
    base = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
started = ["ci-s1", "ci-s2", "ci-s3"]
events = [
    Event(type_="session.started", session=s, at=base + timedelta(milliseconds=i * 100),
          user=f"user-{i % 2}", user_agent="openapi-flow", ip="192.0.2.1")
    for i, s in enumerate(started)
]
events.append(Event(type_="session.activity", session="ci-s1", at=base + timedelta(seconds=1)))
events.append(Event(type_="session.ended", session="ci-s3", at=base + timedelta(seconds=2),
                    reason="logout"))
events.append(Event(type_="session.started", session="ci-future", at=now + timedelta(days=1)))
batch = call(
    ingest_events,
    HTTPStatus.OK,
    BatchResult,
    client=agent,
    slug=SITE,
    body=EventBatch(events=events),
)
assert batch.accepted == 5, batch
assert [r.index for r in batch.rejected] == [5], batch
print(f"  accepted {batch.accepted}, rejected {[(r.index, r.error) for r in batch.rejected]}")

# The site token reaches only ingestion, admission and config.
call(get_site_usage, HTTPStatus.FORBIDDEN, Problem, client=agent, slug=SITE)

usage = call(get_site_usage, HTTPStatus.OK, SiteUsage, client=admin, slug=SITE)
active = len(started) - 1
assert usage.site == SITE and usage.session_limit == 5, usage
assert usage.active == active and usage.live == active and usage.dangling == 0, usage
assert usage.counted == active, usage
print(f"  active {usage.active}, live {usage.live}, counted {usage.counted}, "
      f"utilization {usage.utilization}")

tenant_token = call(
    create_token,
    HTTPStatus.CREATED,
    TokenView,
    client=admin,
    body=CreateToken(role=Role.TENANT, tenant=TENANT),
).token
owner = AuthenticatedClient(base_url=URL, token=tenant_token, raise_on_unexpected_status=True)
totals = call(get_tenant_usage, HTTPStatus.OK, TenantUsage, client=owner, slug=TENANT)
assert totals.active == active and [s.site for s in totals.sites] == [SITE], totals

sessions = call(list_sessions, HTTPStatus.OK, PageSessionView, client=admin, slug=SITE)
assert sorted(s.session for s in sessions.items) == ["ci-s1", "ci-s2"], sessions
assert all(s.state == SessionState.LIVE for s in sessions.items), sessions
# Newest activity first: ci-s1 had activity after ci-s2 started.
assert sessions.items[0].session == "ci-s1", sessions
every = call(list_sessions, HTTPStatus.OK, PageSessionView, client=admin, slug=SITE,
             state="all")
ended = {s.session: s for s in every.items if s.state == SessionState.ENDED}
assert list(ended) == ["ci-s3"] and ended["ci-s3"].end_reason == "logout", every
print(f"  sessions: {[(s.session, s.state.value) for s in every.items]}")

period = base.strftime("%Y-%m")
text = call(
    export_billing,
    HTTPStatus.OK,
    str,
    client=admin,
    period=period,
    format_="json",
)
# The generator reads the first content type (text/csv) as text; the JSON is a
# `BillingExport` all the same.
export = BillingExport.from_dict(json.loads(text))
assert export.period == period, export
rows = [r for r in export.rows if r.site == SITE]
assert len(rows) == 1, export
row = rows[0]
assert (row.tenant, row.plan, row.session_limit) == (TENANT, PLAN, 5), row
assert row.sessions_started == len(started), row
assert row.peak_active == len(started), row
assert row.distinct_users == 2, row
assert row.overage_sessions == 0 and row.total_cents == row.base_cents, row
print(f"  billing {period}: peak {row.peak_active}, started {row.sessions_started}, "
      f"users {row.distinct_users}, total {row.total_cents} {row.currency}")

print("openapi flow: ok")
