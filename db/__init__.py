"""The SQL store: SQLAlchemy 2.0 models, engine set-up and Alembic migrations.

Importing any part of ``db`` registers every table on ``db.base.Base`` (jobs name
conversions and queue keys by table, so all of them must be known together).
"""

from db import (  # noqa: F401  (register every table)
    conversions,
    models,
    nas,
    prediction_cache,
    predictors,
    queue,
)
