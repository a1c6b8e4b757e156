"""Training stages as N processes under torchrun: the context trainers take, the entry point
each process runs, and the launcher the Celery task watches the group with."""
