from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import nurture.models  # noqa: F401
from nurture.db import Base
from nurture.migrate import include_object_for


def test_models_and_migrations_agree(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "include_object": include_object_for(connection.dialect.name)},
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
