"""The project's settings, pointed at the benchmark's own database and URLconf."""

import os

from loyaltysms.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["BENCH_DB_NAME"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
