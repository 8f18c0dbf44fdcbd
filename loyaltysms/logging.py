import logging

from loyaltysms.tenancy.context import current_tenant_id


class TenantFilter(logging.Filter):
    """Adds the tenant in scope (or null) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tenant"):
            record.tenant = current_tenant_id()
        return True
