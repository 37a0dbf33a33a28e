"""The consumer: implementations of the celery_tasks contracts, and the worker that runs them."""

__all__: list[str] = []  # import from its modules
