"""Alembic environment: the engine comes from nurture (``config.attributes['engine']``)."""

from alembic import context

import nurture.models  # noqa: F401  (registers every table)
from nurture.db import Base
from nurture.migrate import include_object_for

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object_for(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()
