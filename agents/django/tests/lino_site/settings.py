"""A bare Lino site with lino.modlib.users and the headcount agent.

Configured from environment variables set by the test fixture (tests/lino_fixtures.py):
HEADCOUNT_LINO_SETTINGS (the HEADCOUNT dict as JSON), HEADCOUNT_LINO_USE_TZ ("1"/"0"),
HEADCOUNT_LINO_TIME_ZONE. Lino puts its database, log and caches next to this file.
"""

import json
import os

from lino.projects.std.settings import *  # noqa: F401,F403

SOCIAL = os.environ.get("HEADCOUNT_LINO_SOCIAL") == "1"


class Site(Site):  # noqa: F405
    title = "headcount agent test site"
    default_ui = "lino_react.react"
    with_users = True
    # the agent's INFO lines appear in a Lino site only when its logger is named here
    auto_configure_logger_names = "atelier lino headcount_django"

    def get_installed_plugins(self):
        yield from super().get_installed_plugins()
        yield "headcount_django"
        if SOCIAL:
            # social-auth-app-django imports django.contrib.auth's models (and they contenttypes')
            yield "django.contrib.contenttypes"
            yield "django.contrib.auth"

    def get_plugin_configs(self):
        yield from super().get_plugin_configs()
        if os.environ.get("HEADCOUNT_LINO_TWO_FACTOR") == "1":
            # Lino's own two-factor sign-in: a code by email for a device not trusted yet
            yield ("users", "enable_two_factor_auth", True)
        if SOCIAL:
            yield ("users", "third_party_authentication", True)

    if os.environ.get("HEADCOUNT_LINO_SOCIAL") == "1":
        # Lino's social sign-in (python-social-auth) with its provider-less username backend
        social_auth_backends = ["social_core.backends.username.UsernameAuth"]


SITE = Site(globals())

SECRET_KEY = os.environ.get("HEADCOUNT_LINO_SECRET_KEY", "lino-test-secret-key-for-headcount-agent-tests")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = os.environ.get("HEADCOUNT_LINO_USE_TZ", "0") == "1"
TIME_ZONE = os.environ.get("HEADCOUNT_LINO_TIME_ZONE", "UTC")

DATABASES["default"]["OPTIONS"] = {  # noqa: F405
    # the gunicorn workers, management commands and the tests share the file
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL;",
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "headcount": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "headcount_cache"},
}

AUTHENTICATION_BACKENDS = ["headcount_django.enforcement.SessionLimitBackend", *AUTHENTICATION_BACKENDS]  # noqa: F405
ROOT_URLCONF = "lino_site.urls"
# tells a user why their session ended (with the answer to their next sign-in)
MIDDLEWARE = [*MIDDLEWARE, "headcount_django.middleware.NoticeMiddleware"]  # noqa: F405
SESSION_COOKIE_AGE = int(os.environ.get("HEADCOUNT_LINO_COOKIE_AGE") or 14 * 24 * 3600)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# the two-factor codes are read from the database by the tests
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"

HEADCOUNT = json.loads(os.environ.get("HEADCOUNT_LINO_SETTINGS") or "{}") or {"ENABLED": False}
HEADCOUNT.setdefault("CACHE", "headcount")

if SOCIAL:
    # Lino's user model has is_active as a property, not a field: social-auth's user lookup
    # (it filters on is_active=True by default) filters on nothing; is_active is still checked
    SOCIAL_AUTH_ACTIVE_USERS_FILTER = {}
    SOCIAL_AUTH_LOGIN_REDIRECT_URL = "/test/state/"
    SOCIAL_AUTH_USERNAME_FORM_URL = "/"
    SOCIAL_AUTH_PIPELINE = (
        "social_core.pipeline.social_auth.social_details",
        "social_core.pipeline.social_auth.social_uid",
        "social_core.pipeline.social_auth.auth_allowed",
        "social_core.pipeline.social_auth.social_user",
        "lino_site.social.existing_user",
        "social_core.pipeline.social_auth.associate_user",
    )
