import pytest


@pytest.mark.django_db
@pytest.mark.redis_cluster
def test_healthz_says_ok_when_database_and_redis_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"ok": True, "database": "ok", "redis": "ok"}


@pytest.mark.django_db
@pytest.mark.redis_cluster
def test_healthz_answers_503_naming_redis_when_it_is_down(client, settings, own_redis):
    own_redis.configure(settings)
    own_redis.stop()

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": "ok", "redis": "unreachable"}


def test_livez_answers_without_touching_anything(client):
    response = client.get("/livez")  # this test has no database: any query would fail it

    assert response.json() == {"ok": True}


def test_an_unknown_machine_path_is_a_json_404(client):
    response = client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json() == {
        "ok": False,
        "error": "not_found",
        "detail": "no such path: /api/nothing-here",
    }


def test_a_wrong_method_on_healthz_is_a_json_405(client):
    response = client.post("/healthz")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"] == "method_not_allowed"
