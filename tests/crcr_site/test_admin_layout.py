"""Every model's admin pages fit the screen (issue 16): its change list, the change (or view)
page of a real row and, where the admin may add one, the add page. At 1440 px and at 1024 px
nothing scrolls sideways, the page nor the list, and nothing on a form sticks out of the
content's box, in headless Chromium (as tests/hud/test_browser.py drives it) against gunicorn,
with rows whose texts are as long as their fields allow."""

import itertools
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.hashers import make_password
from django.db import models
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from tests.chromium import log_in
from tests.paths import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = 3
SCREENSHOTS = ROOT / "var" / "screenshots"
# What long texts hold in production: words, and tokens that do not break (ids, SHAs, URLs).
WORDS = (
    "dispatch to https://api.github.com/repos/example-org/a-rather-long-backend-name/dispatches "
    "failed: 502 Bad Gateway 3f9c2a1e-7b4d-4e8a-9c1f-2d6b8e0a4c7f "
    "0123456789abcdef0123456789abcdef01234567 after 5 attempts; retrying with backoff "
)


def _text(field: models.Field, n: int) -> str:
    limit = field.max_length or 2000
    return (f"{n}-" + WORDS * (1 + limit // len(WORDS)))[:limit].strip() or str(n)


def _value(field: models.Field, n: int):
    """A value a row of this field could hold, as long as it allows."""
    if field.choices:
        return list(field.flatchoices)[n % len(field.flatchoices)][0]
    if isinstance(field, models.ForeignKey):
        return _rows(field.related_model, 1)[0]
    if isinstance(field, models.DateTimeField):
        return timezone.now() - timedelta(hours=n)
    if isinstance(field, models.DateField):
        return timezone.now().date()
    if isinstance(field, models.BooleanField):
        return n % 2 == 0
    if isinstance(field, models.DecimalField):
        return Decimal(n)
    if isinstance(field, models.FloatField):
        return 1234.5 + n
    if isinstance(field, models.BigIntegerField):
        return 1_000_000_000_000 + n
    if isinstance(field, models.IntegerField):
        return n % 100 + 1  # (a task's priority is at most 100)
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.GenericIPAddressField):
        return f"2001:db8::{n + 1}"
    if isinstance(field, models.JSONField):
        return {"level": ["L2", "L3"], "oncalls": [["alice"], ["alice", "bob"]], "n": n}
    if isinstance(field, models.CharField | models.TextField):
        return _text(field, n)
    return field.get_default()


_counter = itertools.count()
# Values the admin reads as more than text.
AS_READ = {"allowlist.SyncedFile": {"content": "L2: [example-org/a-rather-long-backend-name]\n"}}


def _rows(model: type[models.Model], count: int) -> list[models.Model]:
    made = []
    for _ in range(count):
        n = next(_counter)
        values = {
            f.name: _value(f, n)
            for f in model._meta.concrete_fields
            if not f.primary_key or not f.auto_created
        }
        values = {k: v for k, v in values.items() if v is not None}
        values |= AS_READ.get(model._meta.label, {})
        made.append(model._base_manager.create(**values))
    return made


@pytest.fixture
def every_model_filled():
    for model in admin.site._registry:
        if model._meta.label != "auth.User":  # the admin below is one of them
            _rows(model, ROWS)


def _log_in(browser, server, admin_user, width: int):
    admin_user.password = make_password("password", hasher="pbkdf2_sha256")
    admin_user.save()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, server.url, "admin", "password", then="/admin/")
    return context, page


FITS = """() => {
  const page = document.documentElement.scrollWidth <= window.innerWidth;
  const list = document.querySelector('#result_list');
  const box = list && list.closest('.results');
  return {page, list: !list || list.scrollWidth <= box.clientWidth,
          rows: list ? list.tBodies[0].rows.length : 0};
}"""


@pytest.mark.parametrize("width", [1440, 1024])
def test_every_change_list_fits_the_screen(
    browser, server, admin_user, every_model_filled, settings, width
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    context, page = _log_in(browser, server, admin_user, width)
    overflowing = {}
    for model in admin.site._registry:
        meta = model._meta
        page.goto(f"{server.url}{reverse(f'admin:{meta.app_label}_{meta.model_name}_changelist')}")
        fits = page.evaluate(FITS)
        assert fits["rows"] >= 1, meta.label
        if width == 1440:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"admin-{meta.label}.png"), full_page=True)
        if not (fits["page"] and fits["list"]):
            overflowing[meta.label] = fits
    context.close()

    assert overflowing == {}


# Every element of the form inside the content's box: a long value that does not wrap (a
# delivery id, a URL, a JSON dump) sticks out of its row even where the page itself does not
# scroll (its overflow hidden or clipped by a parent).
FORM_FITS = """() => {
  const content = document.querySelector('#content');
  const right = content.getBoundingClientRect().right + 1;
  const out = Array.from(content.querySelectorAll('*')).filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.right > right;
  }).map((el) => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
  return {page: document.documentElement.scrollWidth <= window.innerWidth, out: out.slice(0, 5),
          form: !!document.querySelector('#content-main form, #content-main fieldset')};
}"""


def _form_pages(admin_user) -> list[tuple[str, str]]:
    """(label, URL) of each model's change page of a real row, and its add page if the admin
    may add one."""
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    pages = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        row = model._base_manager.order_by("pk").first()
        assert row is not None, meta.label
        change = f"admin:{meta.app_label}_{meta.model_name}_change"
        pages.append((f"{meta.label} change", reverse(change, args=[row.pk])))
        if model_admin.has_add_permission(request):
            add = f"admin:{meta.app_label}_{meta.model_name}_add"
            pages.append((f"{meta.label} add", reverse(add)))
    return pages


@pytest.mark.parametrize("width", [1440, 1024])
def test_every_change_and_add_page_fits_the_screen(
    browser, server, admin_user, every_model_filled, settings, width
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    context, page = _log_in(browser, server, admin_user, width)
    pages = _form_pages(admin_user)
    overflowing = {}
    for label, url in pages:
        response = page.goto(f"{server.url}{url}")
        assert response is not None, label
        assert response.status == 200, label
        fits = page.evaluate(FORM_FITS)
        assert fits["form"], label
        if width == 1440:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = label.replace(" ", "-")
            page.screenshot(path=str(SCREENSHOTS / f"admin-{name}.png"), full_page=True)
        if not (fits["page"] and not fits["out"]):
            overflowing[label] = fits
    context.close()

    assert any(label.endswith(" add") for label, _ in pages)  # the allowlist's, at least
    assert overflowing == {}


def test_the_onboarding_doctor_page_fits_the_screen(browser, server, admin_user, settings):
    from allowlist.models import DownstreamRepo
    from relay.models import CallbackAudit, Delivery, Dispatch

    repo = "example-org/a-rather-long-backend-name"
    row = DownstreamRepo.objects.create(repo=repo, level="L2")
    delivery = Delivery.objects.create(
        delivery_id=str(uuid.uuid4()), event="pull_request", pr_number=7, body="{}"
    )
    Dispatch.objects.create(
        delivery=delivery, repo=repo, repo_key=repo, level="L2", status="failed",
        last_error=WORDS * 3,
    )  # fmt: skip
    for _ in range(5):  # the refusals it lists, each a long line
        CallbackAudit.objects.create(
            at=timezone.now(), decision="refused", status=401, reason="token_invalid",
            detail=WORDS * 6, repo=repo,
        )  # fmt: skip
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    url = f"{server.url}{reverse('admin:allowlist_downstreamrepo_doctor', args=[row.pk])}"
    seen = {}
    for width in (1440, 1024):
        context, page = _log_in(browser, server, admin_user, width)
        response = page.goto(url)
        fits = page.evaluate(FORM_FITS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"admin-doctor-{width}.png"), full_page=True)
        seen[width] = (response.status if response else 0, fits["page"], fits["out"])
        context.close()

    assert seen == {1440: (200, True, []), 1024: (200, True, [])}
