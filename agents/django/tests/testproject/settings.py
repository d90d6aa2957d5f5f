"""A tiny Django site for the agent's tests."""

import atexit
import json
import os
import shutil
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "test-secret-key-for-the-headcount-agent-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    # a social sign-in path: python-social-auth's username backend needs no provider
    "social_django",
    "headcount_django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "headcount_django.middleware.NoticeMiddleware",
]

ROOT_URLCONF = "testproject.urls"
STATIC_URL = "/static/"

_db_dir = tempfile.mkdtemp(prefix="headcount-django-tests-")
atexit.register(shutil.rmtree, _db_dir, True)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # a subprocess of a test (a management command) is pointed at the test database
        "NAME": os.environ.get("HEADCOUNT_TEST_SITE_DB") or os.path.join(_db_dir, "site.sqlite3"),
        # a file, not memory: the live server and the agent's sender thread use the database too
        "TEST": {"NAME": os.path.join(_db_dir, "test.sqlite3")},
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTHENTICATION_BACKENDS = [
    "headcount_django.enforcement.SessionLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
    "social_core.backends.username.UsernameAuth",
]
SOCIAL_AUTH_USERNAME_FORM_URL = "/login/"
SOCIAL_AUTH_LOGIN_REDIRECT_URL = "/whoami/"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 24 * 3600

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# Replaced per test with the real site created in headcount (or, in a subprocess, by JSON).
HEADCOUNT = json.loads(os.environ["HEADCOUNT_TEST_SETTINGS"]) if os.environ.get("HEADCOUNT_TEST_SETTINGS") else {
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
