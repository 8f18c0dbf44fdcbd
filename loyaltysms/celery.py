import os

from celery import Celery
from kombu import Queue as KombuQueue

from loyaltysms.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyaltysms.settings")

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
