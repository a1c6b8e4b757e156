"""Training code that runs without Celery, a web server or a GPU."""
