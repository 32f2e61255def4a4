"""The admin's change lists: long texts clipped with all of it on hover; "View site" is the HUD."""

import pytest
from django.urls import reverse

from relay.models import Delivery

pytestmark = pytest.mark.django_db

TITLE = "Fix aliasing in torch.compile for views of views that are themselves views of a view"


def test_view_site_opens_the_hud(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert '<a href="/crcr">View site</a>' in page


def test_a_long_title_shows_its_start_and_all_of_it_on_hover(admin_client):
    Delivery.objects.create(
        delivery_id="3f9c2a1e-7b4d-4e8a-9c1f-2d6b8e0a4c7f", event="pull_request",
        upstream_repo="pytorch/pytorch", pr_number=7, head_sha="ab" * 20, title=TITLE, body="{}",
    )  # fmt: skip

    page = admin_client.get(reverse("admin:relay_delivery_changelist")).content.decode()

    assert f'<span title="{TITLE}">{TITLE[:59].rstrip()}…</span>' in page
    assert f'<span title="{"ab" * 20}">{"ab" * 5 + "a"}…</span>' in page
    assert "3f9c2a1e-7b4d-4e8a-9c1f-2d6b8e0a4c7f" in page  # a delivery id is shown whole
    assert "crcr_site/admin.css" in page
