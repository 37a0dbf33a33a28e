"""The producer: sends tasks through the celery_tasks contracts and reads their results."""

__all__: list[str] = []  # import from its modules
