"""Views only the tests use: what this worker process believes, and ways to drive a session."""

import os
import time

from django.conf import settings
from django.http import JsonResponse
from django.urls import path

from headcount_django import client, config


def state(request):
    current = config.current()
    users = settings.SITE.plugins.users
    return JsonResponse({
        "pid": os.getpid(),
        "config_version": current.config_version if current else None,
        "lino_limit": users.active_sessions_limit,
        "user": None if request.user.is_anonymous else request.user.username,
        # seconds since any worker last had an answer from headcount (the offline grace runs from it)
        "offline": client.offline_seconds(),
    })


def expire_in(request, seconds):
    """Give the caller's session a short life (a real session save, reported as activity)."""
    request.session.set_expiry(seconds)
    return JsonResponse({"expires_in": seconds})


def anonymous(request):
    """Store something in an anonymous session, which creates a django_session row."""
    request.session["visited"] = request.session.get("visited", 0) + 1
    return JsonResponse({"visited": request.session["visited"]})


def slow(request, seconds):
    time.sleep(seconds)
    return JsonResponse({"slept": seconds})


urlpatterns = [
    path("state/", state),
    path("expire-in/<int:seconds>/", expire_in),
    path("anonymous/", anonymous),
    path("slow/<int:seconds>/", slow),
]


def snapshot_lock(request):
    """Take the periodic snapshot lock, as a periodic round of a running worker would."""
    from headcount_django import snapshot

    return JsonResponse({"taken": snapshot.round_lock()})


urlpatterns.append(path("snapshot-lock/", snapshot_lock))
