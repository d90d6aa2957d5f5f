from django.contrib.auth import update_session_auth_hash
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from headcount_django.enforcement import message_for, offer_for
from headcount_django.forms import AuthenticationForm


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


urlpatterns = [
    path("login/", login_view),
    path("logout/", logout_view),
    path("whoami/", whoami),
    path("touch/", touch),
    path("password/", change_password),
    path("headcount/", include("headcount_django.urls")),
]
