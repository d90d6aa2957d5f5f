"""A social sign-in step for the test site: the account signing in is an existing Lino user."""


def existing_user(backend, details, user=None, *args, **kwargs):
    if user is not None:
        return None
    from lino.api import rt

    found = rt.models.users.User.objects.filter(username=details.get("username")).first()
    return {"user": found} if found is not None else None
