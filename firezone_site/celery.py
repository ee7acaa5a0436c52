"""The Celery app. Tasks live in each app's ``tasks.py`` and are thin wrappers around services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "firezone_site.settings")

app = Celery("firezone")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
