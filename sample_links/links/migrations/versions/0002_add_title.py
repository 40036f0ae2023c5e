"""Give each link a title (expand: a default keeps older releases working).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("links", sa.Column("title", sa.Text(), nullable=False, server_default=""))


def downgrade():
    op.drop_column("links", "title")
