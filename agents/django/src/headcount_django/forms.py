"""A login form that shows headcount's refusal message instead of "wrong password"."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm as DjangoAuthenticationForm

from .enforcement import message_for


class AuthenticationForm(DjangoAuthenticationForm):
    def get_invalid_login_error(self) -> forms.ValidationError:
        message = message_for(self.request) if self.request is not None else None
        if message:
            return forms.ValidationError(message, code="session_limit")
        return super().get_invalid_login_error()
