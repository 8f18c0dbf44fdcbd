"""The stores are real, and the defaults are safe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_tests_run_on_real_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


def test_tests_run_on_real_redis():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.info("server")["redis_version"]
    cache.set("settings-test", {"ok": 1}, 5)
    assert cache.get("settings-test") == {"ok": 1}


def settings_in_subprocess(env: dict, *names: str) -> dict:
    """Import the settings with exactly `env` (plus what's needed to reach the stores)."""
    base = {
        key: os.environ[key]
        for key in ("PATH", "HOME", "DATABASE_URL", "REDIS_URL", "LOYALTYSMS_DATA_DIR")
        if key in os.environ
    }
    code = (
        "import json, loyaltysms.settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_safe_defaults():
    values = settings_in_subprocess(
        {}, "DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"
    )
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["SESSION_COOKIE_SECURE"] is None  # plain http on localhost


def test_behind_https_cookies_are_secure_and_host_is_allowed():
    values = settings_in_subprocess(
        {"PUBLIC_BASE_URL": "https://sms.brand.example", "ALLOWED_HOSTS": "internal"},
        "ALLOWED_HOSTS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
        "CSRF_TRUSTED_ORIGINS",
    )
    assert values["ALLOWED_HOSTS"] == ["internal", "sms.brand.example"]
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://sms.brand.example"]


def test_debug_only_when_asked():
    assert settings_in_subprocess({"DEBUG": "1"}, "DEBUG")["DEBUG"] is True
    assert settings_in_subprocess({"DEBUG": "0"}, "DEBUG")["DEBUG"] is False


def test_secret_key_from_env_wins():
    values = settings_in_subprocess({"SECRET_KEY": "from-env-" + "x" * 50}, "SECRET_KEY")
    assert values["SECRET_KEY"] == "from-env-" + "x" * 50


def test_database_url_is_used_when_set():
    url = "postgres://someone:pw@db.internal:6543/brandsms"
    values = settings_in_subprocess({"DATABASE_URL": url}, "DATABASES")
    db = values["DATABASES"]["default"]
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == (
        "db.internal",
        6543,
        "brandsms",
        "someone",
    )


def test_logs_are_json_lines_with_the_tenant():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('loyaltysms.test').warning('hello', extra={'order': 7})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "loyaltysms.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(out.stderr.strip().splitlines()[-1])
    assert record["message"] == "hello" and record["level"] == "WARNING"
    assert record["order"] == 7 and "tenant" in record and "time" in record
