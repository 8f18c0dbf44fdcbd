"""`Idempotency-Key` on any POST (api.md Conventions).

The first response to a key is stored with a hash of the request (method, path, body) and
replayed for the same key and request; the same key with a different request → 422. The key
is claimed with INSERT … ON CONFLICT DO NOTHING inside the request's transaction, so a
concurrent duplicate waits for the first to commit and then replays it. Server errors (5xx)
are not stored: the client may retry them. Records are kept ≥ 24 h (see the cleanup task).
"""

from __future__ import annotations

import functools
import hashlib
from datetime import timedelta

from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone

from loyaltysms.models import IdempotencyRecord
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import require_tenant

HEADER = "Idempotency-Key"
KEEP_FOR = timedelta(hours=48)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(ProblemError):
    code = "idempotency-key-reused"


class IdempotencyKeyInvalid(ProblemError):
    status_code = 400
    code = "idempotency-key-invalid"


def _request_hash(request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.get_full_path()}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def _claim(tenant_id: int, key: str, request, request_hash: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO loyaltysms_idempotencyrecord "
            "(tenant_id, key, method, path, request_hash, content_type, created_at) "
            "VALUES (%s, %s, %s, %s, %s, '', %s) "
            "ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id",
            [tenant_id, key, request.method, request.path[:500], request_hash, timezone.now()],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _replay(record: IdempotencyRecord, request_hash: str) -> HttpResponse:
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"The Idempotency-Key {record.key!r} was used for a different request "
            f"({record.method} {record.path}); use a new key for a new request."
        )
    response = HttpResponse(
        bytes(record.response_body),
        status=record.status_code,
        content_type=record.content_type,
    )
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(handler):
    """Wrap a DRF view's post(): see the module docstring."""

    @functools.wraps(handler)
    def post(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(self, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise IdempotencyKeyInvalid(
                f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters."
            )
        tenant = require_tenant("Idempotency-Key")
        request_hash = _request_hash(request)
        with transaction.atomic():
            record_id = _claim(tenant.pk, key, request, request_hash)
            if record_id is None:
                record = IdempotencyRecord.objects.get(key=key)
                return _replay(record, request_hash)
            try:
                with transaction.atomic():
                    response = handler(self, request, *args, **kwargs)
            except Exception as exc:  # a problem response is a response too; keep it
                response = self.handle_exception(exc)
            response = self.finalize_response(request, response, *args, **kwargs)
            response.render()
            if response.status_code >= 500:
                transaction.set_rollback(True)  # not stored: the client may retry
                return response
            IdempotencyRecord.objects.filter(pk=record_id).update(
                status_code=response.status_code,
                response_body=response.content,
                content_type=response.get("Content-Type", ""),
            )
        return response

    post.idempotent = True
    return post


def idempotency_records_purge(*, now=None) -> int:
    # WARNING: every tenant's records; a maintenance job, not a request.
    cutoff = (now or timezone.now()) - KEEP_FOR
    deleted, _ = IdempotencyRecord.objects.unscoped().filter(created_at__lt=cutoff).delete()
    return deleted
