"""Migrate, then create or refresh the test users, their groups and the one client.

Safe to run again on the same database: users get their password, e-mail, name
and exact group list back; the client gets the id, secret and URIs from the
environment of this run.
"""
import os

from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from oauth2_provider.models import get_application_model

PASSWORD = "headcount-test-pw"
CLIENT_NAME = "headcount relying party"

# username, e-mail, display name, groups
USERS = [
    ("admin", "admin@example.test", "Headcount Admin", ["headcount-admins"]),
    ("maint-acme", "maint-acme@example.test", "Acme Maintainer", ["headcount-tenant-acme"]),
    ("maint-globex", "maint-globex@example.test", "Globex Maintainer", ["headcount-tenant-globex"]),
    ("nobody", "nobody@example.test", "Nobody", []),
    ("wrong-audience", "wrong-audience@example.test", "Wrong Audience", ["headcount-admins"]),
    ("other-issuer", "other-issuer@example.test", "Other Issuer", ["headcount-admins"]),
]


def _uris(name, required):
    value = " ".join(os.environ.get(name, "").split())
    if required and not value:
        raise CommandError(f"{name} must list at least one URI (space-separated)")
    return value


class Command(BaseCommand):
    help = "Migrate, then seed the test users and the relying-party client from the environment."

    def handle(self, *args, **options):
        # One interpreter for both steps: a warm start pays Django's import once.
        call_command("migrate", interactive=False, verbosity=0)
        with transaction.atomic():
            self.seed()

    def seed(self):
        client_id = os.environ.get("OIDC_CLIENT_ID") or "headcount"
        client_secret = os.environ.get("OIDC_CLIENT_SECRET") or "headcount-secret"
        redirect_uris = _uris("OIDC_REDIRECT_URIS", required=True)
        logout_uris = _uris("OIDC_POST_LOGOUT_REDIRECT_URIS", required=False)

        for username, email, name, groups in USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.email = email
            user.first_name = name
            user.last_name = ""
            user.is_active = True
            if not user.has_usable_password() or not user.check_password(PASSWORD):
                user.set_password(PASSWORD)
            user.save()
            user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])

        Application = get_application_model()
        # One client only: a restart with another client id replaces it.
        Application.objects.exclude(name=CLIENT_NAME).delete()
        app = Application.objects.filter(name=CLIENT_NAME).first() or Application(name=CLIENT_NAME)
        app.client_id = client_id
        # Plain text here: the model hashes it on save (hash_client_secret).
        app.hash_client_secret = True
        app.client_secret = client_secret
        app.client_type = Application.CLIENT_CONFIDENTIAL
        app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        app.redirect_uris = redirect_uris
        app.post_logout_redirect_uris = logout_uris
        app.skip_authorization = True
        app.algorithm = Application.RS256_ALGORITHM
        app.save()

        self.stdout.write(
            f"seeded {len(USERS)} users and client {client_id!r} "
            f"(redirect URIs: {redirect_uris}; post-logout: {logout_uris or 'none'})"
        )
