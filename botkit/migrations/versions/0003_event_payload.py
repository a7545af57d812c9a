"""Processed events keep their payload and claim time, so a worker can finish another's event.

Revision ID: 0003
Revises: 0002
Create Date: 2024-06-10 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("processed_events", sa.Column("payload", JSON, nullable=True))
    op.add_column("processed_events", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("payload")
