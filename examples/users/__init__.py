"""The user-management service: the seed template's example, built on cqrskit.

Run it with ``python -m examples.users`` (or ``nox -s serve``); ``nox -s demo`` runs a scripted tour.
It uses SQLite and an in-memory cache by default, PostgreSQL and Redis when ``USERS_DATABASE_URL`` and
``USERS_REDIS_URL`` are set. Its domain events feed the ``user_stats`` read model in-process, or, with
``USERS_BROKER_URL`` set too, through the outbox and a broker (RabbitMQ or NATS) to
``python -m examples.users.worker``.
"""
