import os

from celery import Celery
from kombu import Queue as KombuQueue
from kombu.transport import TRANSPORT_ALIASES

from loyaltysms.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyaltysms.settings")

# Redis URLs get kombu's Redis transport with the fix that lets a worker ride out a Redis
# outage (loyaltysms.broker). The alias, not broker_transport: that one would not reach
# redis+socket:// URLs, whose "redis+" prefix names the transport itself.
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "loyaltysms.broker:Transport"

app = Celery("loyaltysms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [KombuQueue(queue.value, routing_key=queue.value) for queue in Queue]


def route_by_task_queue(name, args, kwargs, options, task=None, **kw):
    """Send each task to the queue its @tenant_task declared (Celery's own `queue` task
    attribute is deprecated in favour of task_routes)."""
    queue = getattr(task, "route_queue", None)
    return {"queue": queue} if queue else None


app.conf.task_routes = (route_by_task_queue,)
app.autodiscover_tasks()
