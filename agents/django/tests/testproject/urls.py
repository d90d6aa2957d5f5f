from django.contrib import admin, messages
from django.contrib.auth import update_session_auth_hash
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from headcount_django.enforcement import message_for, offer_for
from headcount_django.forms import AdminAuthenticationForm, AuthenticationForm

# the admin's sign-in shows the refusal's reason
admin.site.login_form = AdminAuthenticationForm


@csrf_exempt
def login_view(request):
    """A plain form login through authenticate(), as Django's LoginView does it."""
    from django.contrib.auth import login

    form = AuthenticationForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.get_user())
        return JsonResponse({"ok": True, "user": request.user.get_username()})
    errors = [str(e) for e in form.non_field_errors()]
    offer = offer_for(request)
    return JsonResponse(
        {"ok": False, "errors": errors, "refusal": message_for(request), "offer": offer.url if offer else None},
        status=403,
    )


@csrf_exempt
def logout_view(request):
    from django.contrib.auth import logout

    logout(request)
    return JsonResponse({"ok": True})


def whoami(request):
    return JsonResponse({"user": request.user.get_username() if request.user.is_authenticated else None})


def notices(request):
    """Who is signed in, and what Django's messages framework has to tell (the agent's notices)."""
    return JsonResponse({
        "user": request.user.get_username() if request.user.is_authenticated else None,
        "messages": [str(m) for m in messages.get_messages(request)],
    })


def touch(request):
    """Modifies the session, as Lino's middleware does to record activity."""
    request.session["touched"] = request.session.get("touched", 0) + 1
    days = request.GET.get("expiry_days")
    if days:
        request.session.set_expiry(int(days) * 24 * 3600)
    return HttpResponse("ok")


@csrf_exempt
def change_password(request):
    user = request.user
    user.set_password(request.POST["password"])
    user.save()
    update_session_auth_hash(request, user)
    return HttpResponse("ok")


@csrf_exempt
def two_step(request):
    """A two-factor sign-in's first step: the password is checked, the session is not created yet."""
    from django.contrib.auth import authenticate

    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return JsonResponse({"ok": False, "refusal": message_for(request)}, status=403)
    request.session["two_step_user"] = user.pk
    return JsonResponse({"ok": True, "code_sent": True})


@csrf_exempt
def two_step_verify(request):
    """The second step: the code was right, the user is signed in (django-two-factor-auth's shape)."""
    from django.contrib.auth import get_user_model, login

    user = get_user_model().objects.get(pk=request.session.pop("two_step_user"))
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    signed_in = request.user.is_authenticated
    return JsonResponse({"ok": signed_in}, status=200 if signed_in else 403)


urlpatterns = [
    path("two-step/", two_step),
    path("two-step/verify/", two_step_verify),
    path("login/", login_view),
    path("logout/", logout_view),
    path("whoami/", whoami),
    path("notices/", notices),
    path("admin/", admin.site.urls),
    path("social/", include("social_django.urls", namespace="social")),
    path("touch/", touch),
    path("password/", change_password),
    path("headcount/", include("headcount_django.urls")),
]
