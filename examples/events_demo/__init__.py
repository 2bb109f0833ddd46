"""A small service that scales out with events: an API side, an outbox relay and a worker.

Run ``PYTHONPATH=src:. python -m examples.events_demo`` (PostgreSQL and RabbitMQ at
``CQRSKIT_POSTGRES_URL`` / ``CQRSKIT_RABBITMQ_URL``). See `examples.events_demo.app` for the wiring.
"""
