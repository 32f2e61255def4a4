from django.urls import path

from hud import views

urlpatterns = [
    path("crcr", views.index, name="crcr-index"),
    path("crcr/", views.index),
    path("api/crcr/results", views.ingest_results, name="crcr-ingest"),
    path("api/crcr/results/", views.ingest_results),
]
