"""Login forms that show headcount's refusal message instead of "wrong password"."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm as DjangoAdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm as DjangoAuthenticationForm
from django.utils.html import format_html

from .refusals import message_for, offer_for


class RefusalMessageMixin(DjangoAuthenticationForm):
    """A refusal at the limit reads as its message, with the self-service link if offered.

    A subclass of Django's form (not a bare mixin) so that ``request`` and the method it
    overrides are known; put it before the form it changes.
    """

    def get_invalid_login_error(self) -> forms.ValidationError:
        message = message_for(self.request) if self.request is not None else None
        if message:
            offer = offer_for(self.request)
            if offer is not None:
                message = format_html("{} {}", message, offer.html())
            return forms.ValidationError(message, code="session_limit")
        return super().get_invalid_login_error()


class AuthenticationForm(RefusalMessageMixin, DjangoAuthenticationForm):
    """Django's form (``LoginView(authentication_form=...)``)."""


class AdminAuthenticationForm(RefusalMessageMixin, DjangoAdminAuthenticationForm):
    """Django admin's form: ``admin.site.login_form = AdminAuthenticationForm``."""
