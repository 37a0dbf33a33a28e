"""The producer: sends tasks through the celery_tasks contracts and reads their results."""
