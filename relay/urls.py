from django.urls import path

from relay import ops, views

# Both with and without the trailing slash: a POST cannot be redirected.
urlpatterns = [
    path("github/webhook", views.webhook, name="github-webhook"),
    path("github/webhook/", views.webhook),
    path("github/callback", views.callback, name="github-callback"),
    path("github/callback/", views.callback),
    path("crcr/ops", ops.ops_view, name="crcr-ops"),
]
