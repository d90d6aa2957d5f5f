from django.urls import include, path
from lino.core.urls import urlpatterns as lino_urlpatterns

from . import testviews

urlpatterns = [
    path("headcount/", include("headcount_django.urls")),
    path("test/", include(testviews.urlpatterns)),
    *lino_urlpatterns,
]
