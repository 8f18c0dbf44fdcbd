"""Celery tasks that run inside one tenant's scope.

Every task takes `tenant_id` as its first argument (architecture.md); the decorator loads the
tenant, puts it in scope for the task body and passes the Tenant object on. A task sent without
a tenant, or for a tenant that no longer exists, refuses to run.
"""

from __future__ import annotations

import functools
import logging

from celery import shared_task
from django.db import transaction

from loyaltysms.queues import Queue
from loyaltysms.tenancy.context import TenantScopeError, tenant_scope

logger = logging.getLogger(__name__)


def tenant_task(*, queue: Queue = Queue.DEFAULT, **options):
    def decorator(func):
        @functools.wraps(func)
        def run(tenant_id, *args, **kwargs):
            from loyaltysms.models import Tenant

            if isinstance(tenant_id, bool) or not isinstance(tenant_id, int):
                raise TenantScopeError(
                    f"{func.__name__} needs a tenant id as its first argument, got {tenant_id!r}"
                )
            tenant = Tenant.objects.filter(pk=tenant_id).first()
            if tenant is None:
                raise TenantScopeError(f"{func.__name__}: tenant {tenant_id} does not exist")
            with tenant_scope(tenant):
                return func(tenant, *args, **kwargs)

        return shared_task(route_queue=queue.value, **options)(run)

    return decorator


def enqueue_on_commit(task, tenant_id: int, *args) -> None:
    """Send the task once the surrounding transaction commits (never for rolled-back work).

    The work itself is a row in PostgreSQL by then. A broker that can't be reached is logged,
    not raised: raised, it would fail the request after its writes have committed."""

    def send() -> None:
        try:
            task.delay(tenant_id, *args)
        except Exception as exc:
            logger.warning(
                "task not sent: the broker is unreachable",
                extra={"task": task.name, "task_args": [tenant_id, *args], "error": str(exc)},
            )

    transaction.on_commit(send)
