"""A small service that scales out with events: an API side, an outbox relay and a worker.

Run ``PYTHONPATH=src:. python -m examples.events_demo`` (PostgreSQL, RabbitMQ and Redis at
``CQRSKIT_POSTGRES_URL`` / ``CQRSKIT_RABBITMQ_URL`` / ``CQRSKIT_REDIS_URL``): the relay and the worker
run as processes of their own. See `examples.events_demo.app` for the wiring.
"""
