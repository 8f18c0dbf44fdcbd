"""Small database helpers the ORM does not offer.

The SQL here is assembled from model metadata only (table and column names, quoted by the
backend); every value travels as a parameter.
"""

from __future__ import annotations

from django.db import connection, models

from loyaltysms.tenancy.context import TenantScopeError, require_tenant


def insert_unless_exists(obj: models.Model, *, conflict: tuple[str, ...]) -> bool:
    """INSERT … ON CONFLICT (conflict) DO NOTHING RETURNING id, for a tenant-owned row.

    True: inserted (obj.pk is set). False: a row with those values exists, or a concurrent
    transaction inserted one and committed — PostgreSQL waits for it before deciding, so
    the caller can read it right away. Unlike save() in a savepoint, a conflict costs no
    extra round trips and no aborted subtransaction.
    """
    tenant = require_tenant(type(obj).__name__)
    if obj.tenant_id != tenant.pk:
        raise TenantScopeError(f"Refusing to insert {type(obj).__name__} for another tenant")
    meta = obj._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    targets = ", ".join(quote(meta.get_field(name).column) for name in conflict)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({targets}) DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = "default"
    return True


def _check_tenant(obj: models.Model) -> None:
    tenant = require_tenant(type(obj).__name__)
    if getattr(obj, "tenant_id", tenant.pk) != tenant.pk:
        raise TenantScopeError(f"Refusing to write {type(obj).__name__} of another tenant")


def write_together(
    *,
    inserts: list[models.Model] = (),
    updates: list[tuple[models.Model, list[str]]] = (),
) -> None:
    """Insert and update several tenant-owned rows in ONE statement (data-modifying CTEs).

    For hot paths where each ORM save() would be a round trip of its own. Inserted objects get
    their primary keys; fields are prepared exactly as save() prepares them (auto_now
    included). Rows of one statement can't see each other's changes, so nothing written here
    may depend on another row written in the same call.
    """
    quote = connection.ops.quote_name
    parts, params, names = [], [], []
    for n, obj in enumerate(inserts):
        _check_tenant(obj)
        meta = obj._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        columns = ", ".join(quote(f.column) for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        parts.append(
            f"i{n} AS (INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) "
            f"RETURNING {quote(meta.pk.column)})"
        )
        params += [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
        names.append(f"(SELECT {quote(meta.pk.column)} FROM i{n})")
    for n, (obj, field_names) in enumerate(updates):
        _check_tenant(obj)
        meta = obj._meta
        fields = [meta.get_field(name) for name in field_names]
        fields += [
            f for f in meta.concrete_fields if getattr(f, "auto_now", False) and f not in fields
        ]
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        parts.append(
            f"u{n} AS (UPDATE {quote(meta.db_table)} SET {assignments} "
            f"WHERE {quote(meta.pk.column)} = %s RETURNING 1)"
        )
        params += [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
        params.append(obj.pk)
        names.append(f"(SELECT count(*) FROM u{n})")
    if not parts:
        return
    sql = f"WITH {', '.join(parts)} SELECT {', '.join(names)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    for obj, pk in zip(inserts, row, strict=False):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = "default"
    for (obj, _), count in zip(updates, row[len(inserts) :], strict=True):
        if count != 1:
            raise RuntimeError(f"{type(obj).__name__} {obj.pk} was not updated")
