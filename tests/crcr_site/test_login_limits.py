"""Failed admin logins are limited per address and per user name before any password is hashed
(issue 13, item 11): a few clients guessing passwords starved the relay's workers."""

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def admin(db):
    return User.objects.create_superuser("admin", "a@example.com", "right-password")


def attempt(client, user: str, password: str, address: str = "10.0.0.1", **headers):
    return client.post(
        LOGIN, {"username": user, "password": password}, REMOTE_ADDR=address, headers=headers
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_the_right_password_works(client, admin):
    assert logged_in(attempt(client, "admin", "right-password"))


def test_after_five_failures_from_one_address_it_is_refused_even_the_right_password(client, admin):
    failures = [attempt(client, f"guess-{n}", "wrong").status_code for n in range(5)]

    locked = attempt(client, "admin", "right-password")

    assert failures == [200] * 4 + [429]  # the form again, with its error; the fifth locks
    assert locked.status_code == 429
    assert not logged_in(locked)
    assert logged_in(attempt(client, "admin", "right-password", address="10.0.0.2"))


def test_after_five_failures_for_one_user_name_it_is_refused_from_everywhere(client, admin):
    for n in range(5):
        attempt(client, "admin", "wrong", address=f"10.0.1.{n}")

    assert attempt(client, "admin", "right-password", address="10.0.2.1").status_code == 429


def test_behind_a_load_balancer_clients_are_told_apart_by_the_header_it_sets(
    client, admin, settings
):
    settings.CRCR_CLIENT_IP_HEADER = "X-Forwarded-For"
    for n in range(5):  # one client behind the balancer (10.9.9.9), guessing
        attempt(client, f"guess-{n}", "wrong", address="10.9.9.9",
                **{"X-Forwarded-For": "203.0.113.7"})  # fmt: skip

    other = attempt(client, "admin", "right-password", address="10.9.9.9",
                    **{"X-Forwarded-For": "spoofed, 198.51.100.3"})  # fmt: skip

    assert logged_in(other)
