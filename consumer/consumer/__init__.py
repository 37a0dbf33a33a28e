"""The consumer: implementations of the celery_tasks contracts, and the worker that runs them."""
