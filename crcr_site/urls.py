from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from crcr_site.health import healthz, livez
from crcr_site.metrics import metrics_view
from crcr_site.readiness import readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", RedirectView.as_view(url=static("hud/favicon.svg"), permanent=True)),
    path("", include("relay.urls")),
    path("", include("hud.urls")),
]

handler400 = "crcr_site.errors.bad_request"
handler403 = "crcr_site.errors.permission_denied"
handler404 = "crcr_site.errors.not_found"
handler500 = "crcr_site.errors.server_error"

admin.site.site_header = "CRCR administration"
admin.site.site_title = "CRCR admin"
admin.site.index_title = "Cross-Repository CI Relay"
admin.site.site_url = "/crcr"  # "View site": the HUD (the site has no page at /)
