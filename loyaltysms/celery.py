import os

from celery import Celery
from kombu import Queue as KombuQueue

from loyaltysms.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyaltysms.settings")

app = Celery("loyaltysms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [KombuQueue(queue.value, routing_key=queue.value) for queue in Queue]
app.autodiscover_tasks()
