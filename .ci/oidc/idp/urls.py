from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path
from oauth2_provider import urls as oauth2_urls


def index(request):
    who = request.user.get_username() if request.user.is_authenticated else "nobody"
    return HttpResponse(
        f"Test OpenID Connect provider. Signed in: {who}.\n", content_type="text/plain"
    )


urlpatterns = [
    path("", index, name="index"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Only the protocol endpoints: no application or token management pages.
    path(
        "o/",
        include(
            (oauth2_urls.base_urlpatterns + oauth2_urls.oidc_urlpatterns, "oauth2_provider"),
            namespace="oauth2_provider",
        ),
    ),
]
