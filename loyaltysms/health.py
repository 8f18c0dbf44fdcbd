import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)


def _checks() -> dict[str, str]:
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["db"] = "ok"
    except Exception as exc:
        logger.warning("healthz: database check failed", extra={"error": str(exc)})
        checks["db"] = "error"
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        logger.warning("healthz: redis check failed", extra={"error": str(exc)})
        checks["redis"] = "error"
    return checks


def healthz(request):
    """200 when PostgreSQL and Redis both answer, 503 otherwise (for monitoring)."""
    checks = _checks()
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


def healthz_web(request):
    """For a load balancer's checks of the web processes: 200 while PostgreSQL answers, since
    the API, the dashboard and the webhooks keep working without Redis (work waits in
    PostgreSQL for the workers); Redis is reported, not required. 503 without PostgreSQL."""
    checks = _checks()
    return JsonResponse(checks, status=200 if checks["db"] == "ok" else 503)
