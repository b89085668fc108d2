"""URLs of the web service: the API under /api/, health for load balancers."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.urls import path

from openanomaly.entrypoints.web import state, views
from openanomaly.entrypoints.web.api import api
from openanomaly.entrypoints.web.metrics import metrics


def healthz(request: HttpRequest) -> JsonResponse:
    """The process serves requests."""
    return JsonResponse({"status": "alive"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The store and the time series database answer: this process can serve the API."""
    context = state.current()
    for what, check in (("store", context.store.list_stored), ("prometheus", context.tsdb.ping)):
        try:
            check()
        except Exception as exc:  # any failure means not ready; the answer says which
            return JsonResponse({"error": f"{what}: {type(exc).__name__}: {exc}"}, status=503)
    return JsonResponse({"status": "ready"})


urlpatterns = [
    path("api/", api.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
    path("", lambda request: HttpResponseRedirect("/pipelines")),
    path("login", views.login),
    path("logout", views.logout),
    path("pipelines", views.pipeline_list),
    path("pipelines/new", views.pipeline_edit),
    path("pipelines/preview", views.pipeline_preview),
    path("pipelines/editor", views.editor_switch),
    path("pipelines/check", views.editor_check),
    path("pipelines/<str:name>", views.pipeline_page),
    path("pipelines/<str:name>/edit", views.pipeline_edit),
    path("pipelines/<str:name>/chart", views.pipeline_chart),
    path("pipelines/<str:name>/sparkline", views.pipeline_sparkline),
    path("pipelines/<str:name>/<str:action>", views.pipeline_action),
    path("users", views.users_page),
    path("users/new", views.users_action, {"action": "create"}),
    path("tokens/revoke", views.users_action, {"action": "revoke"}),
    path("users/<str:name>/<str:action>", views.users_action),
]
