"""A tiny Django site for the agent's tests."""

import os
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "test-secret-key-for-the-headcount-agent-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "headcount_django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "testproject.urls"
STATIC_URL = "/static/"

_db_dir = tempfile.mkdtemp(prefix="headcount-django-tests-")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_db_dir, "site.sqlite3"),
        # a file, not memory: the live server and the agent's sender thread use the database too
        "TEST": {"NAME": os.path.join(_db_dir, "test.sqlite3")},
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTHENTICATION_BACKENDS = [
    "headcount_django.enforcement.SessionLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 24 * 3600

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {},
    }
]

# Replaced per test with the real site created in headcount.
HEADCOUNT = {
    "URL": "http://127.0.0.1:9",
    "SITE": "placeholder",
    "TOKEN": "placeholder",
    "WEBHOOK_SECRET": "whsec_cGxhY2Vob2xkZXI=",
    "MODE": "off",
    "SNAPSHOT_INTERVAL": 0,
    "CONFIG_INTERVAL": 0,
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"headcount_django": {"handlers": ["console"], "level": "INFO"}},
}
