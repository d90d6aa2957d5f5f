"""Settings of the test OpenID Connect provider.

Everything that must survive a restart lives in OIDC_STATE_DIR: the SQLite
database, the RSA signing key and Django's secret key. The two keys are made
on first use and kept, so tokens and sessions stay valid across restarts of
the same directory.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

STATE_DIR = Path(os.environ.get("OIDC_STATE_DIR", BASE_DIR / ".state")).resolve()
STATE_DIR.mkdir(parents=True, exist_ok=True)

# The issuer is fixed by the start script (http://127.0.0.1:PORT/o) rather than
# derived from each request's Host header, so that `iss` never depends on how a
# relying party spells the address.
ISSUER = os.environ.get("OIDC_ISSUER", "")


def _keep(name, make):
    """Return the content of STATE_DIR/name, writing make() there the first time."""
    path = STATE_DIR / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(make())
    # A concurrent first start may still be writing: wait for a full file.
    for _ in range(100):
        text = path.read_text()
        if text:
            return text
        import time

        time.sleep(0.05)
    raise RuntimeError(f"{path} stayed empty")


def _new_rsa_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _new_secret():
    import secrets

    return secrets.token_urlsafe(50)


SECRET_KEY = _keep("django-secret-key", _new_secret)
OIDC_RSA_PRIVATE_KEY = _keep("oidc-rsa-key.pem", _new_rsa_pem)

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "idp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "idp.urls"
WSGI_APPLICATION = "idp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": STATE_DIR / "oidc.sqlite3",
        "OPTIONS": {"timeout": 20},
    }
}

# Real PBKDF2, fewer rounds: the passwords and the client secret are public test
# values, and every start and every token request pays for the hashing.
PASSWORD_HASHERS = ["idp.hashers.QuickPBKDF2PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = []

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ID_TOKEN_SECONDS = int(os.environ.get("OIDC_ID_TOKEN_SECONDS", "300"))

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": OIDC_RSA_PRIVATE_KEY,
    "OAUTH2_VALIDATOR_CLASS": "idp.validators.HeadcountValidator",
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Name and user name",
        "email": "E-mail address",
    },
    "DEFAULT_SCOPES": ["openid"],
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post"],
    "ID_TOKEN_EXPIRE_SECONDS": ID_TOKEN_SECONDS,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "PKCE_REQUIRED": True,
    # RP-initiated logout: no confirmation page when the id_token_hint belongs to
    # the signed-in user; the post-logout URI must be registered on the client.
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    # RFC 9700 behaviour now rather than at DOT 4.0: no implicit or password grant,
    # S256 only, no access token in query strings, `iss` in the authorization
    # response (RFC 9207), hashed token storage.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"oauth2_provider": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
