"""Include in the site's URL conf, e.g. ``path("headcount/", include("headcount_django.urls"))``."""

from django.urls import path

from . import selfservice, views

app_name = "headcount"

urlpatterns = [
    path("webhook/", views.webhook, name="webhook"),
    path("replace/", selfservice.replace_view, name="replace"),
]
