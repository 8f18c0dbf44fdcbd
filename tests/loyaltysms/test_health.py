import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_reports_db_and_redis_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"db": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_down(settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path / 'nothing.sock'}"
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"db": "ok", "redis": "error"}


@pytest.mark.django_db
def test_the_web_check_stays_up_while_redis_is_down(settings, tmp_path):
    assert Client().get("/healthz/web").json() == {"db": "ok", "redis": "ok"}
    settings.REDIS_URL = f"unix://{tmp_path / 'nothing.sock'}"
    response = Client().get("/healthz/web")
    assert response.status_code == 200  # the API answers without Redis: keep it in rotation
    assert response.json() == {"db": "ok", "redis": "error"}
