from django.urls import path, re_path

from hud import api, views

# owner/name as the allowlist accepts it (allowlist/yamlfile.py REPO_RE), so every stored repo
# has a page.
REPO = r"(?P<org>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+)"

urlpatterns = [
    path("crcr", views.index, name="crcr-index"),
    path("crcr/", views.index),
    path("crcr/pr/<int:number>", views.pr, name="crcr-pr"),
    path("crcr/prs", views.prs, name="crcr-prs"),
    path("crcr/metrics", views.metrics, name="crcr-metrics"),
    path("crcr/proposals/<int:pk>/allowlist.diff", views.proposal_diff, name="crcr-proposal-diff"),
    re_path(rf"^crcr/{REPO}$", views.repo, name="crcr-repo"),
    path("api/crcr/results", views.ingest_results, name="crcr-ingest"),
    path("api/crcr/results/", views.ingest_results),
    path("api/crcr/summary", api.Summary.as_view(), name="api-summary"),
    path("api/crcr/prs", api.Prs.as_view(), name="api-prs"),
    path("api/crcr/prs/<int:number>", api.Pr.as_view(), name="api-pr"),
    path("api/crcr/metrics", api.Metrics.as_view(), name="api-metrics"),
    re_path(rf"^api/crcr/repos/{REPO}$", api.Repo.as_view(), name="api-repo"),
    path("api/crcr/schema", api.schema_view, name="api-schema"),
    path("api/crcr/docs", api.docs_view, name="api-docs"),
]
