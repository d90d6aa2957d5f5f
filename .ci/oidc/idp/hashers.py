"""Password hashing for public test credentials."""
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 with 10,000 rounds instead of a million.

    The stored hashes keep the standard `pbkdf2_sha256$...` form. Used for the
    seeded passwords and for the client secret that DOT hashes on save.
    """

    iterations = 10_000
