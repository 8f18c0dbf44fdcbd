"""The project's settings, pointed at the benchmark's own database and URLconf."""

import os

from loyaltysms.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = os.environ["BENCH_DB_NAME"]  # noqa: F405
ROOT_URLCONF = "bench.urls"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# The benchmarks measure what the server can do, far past a brand's default API limit; the
# noisy-neighbour benchmark sets its brands' own limits (Tenant.api_rate_per_second).
API_RATE_PER_SECOND = 1_000_000.0
API_RATE_BURST = 1_000_000
