"""The queues: which queue a job goes to (routing), the Celery app and its Redis transport,
job messages built without a broker, and the replicas KEDA wants for a backlog."""
