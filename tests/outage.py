"""Redis out of reach, for real: the cache or the Celery broker pointed at a local port that
nothing listens on (connections refused), as when Redis is down; or the cache pointed at a
port that takes connections and never answers, as when Redis hangs."""

from __future__ import annotations

import socket
from contextlib import contextmanager

from django.conf import settings
from django.test import override_settings

from loyaltysms import celery_app

from .redis_server import free_port as closed_port  # a port nothing listens on


def _forget_broker_connections() -> None:
    # The app keeps a connection pool and a producer pool made from the broker URL it had
    # then (Celery drops them the same way after a fork).
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def broker_down():
    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{closed_port()}/0"
    _forget_broker_connections()
    try:
        yield
    finally:
        celery_app.conf.broker_url = saved
        _forget_broker_connections()


def _cache_at(port: int):
    location = f"redis://127.0.0.1:{port}/0"
    return override_settings(
        CACHES={"default": {**settings.CACHES["default"], "LOCATION": location}}
    )


@contextmanager
def cache_down():
    with _cache_at(closed_port()):
        yield


@contextmanager
def cache_hung():
    """A listening socket nobody accepts from: connections complete (the kernel's backlog),
    and no byte ever comes back."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        with _cache_at(listener.getsockname()[1]):
            yield
