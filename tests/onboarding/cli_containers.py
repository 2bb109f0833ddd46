"""Containers for ``python -m cqrskit processes stuck`` in a subprocess, set by ``ONB_*`` variables."""

from __future__ import annotations

import os

from examples.onboarding.container import Container

from tests.onboarding.broker_app import BrokerContainer, configured


def embedded() -> Container:
    """The onboarding example on the SQLite file ``ONB_DATABASE_URL`` names."""
    container = Container()
    container.config.database_url.from_value(os.environ["ONB_DATABASE_URL"])
    return container


def broker() -> BrokerContainer:
    """The onboarding example on PostgreSQL behind RabbitMQ, in the schema ``ONB_SCHEMA``."""
    return configured(
        os.environ["ONB_DATABASE_URL"],
        os.environ["ONB_SCHEMA"],
        os.environ["ONB_RABBITMQ_URL"],
        os.environ["ONB_SCHEMA"],
    )
