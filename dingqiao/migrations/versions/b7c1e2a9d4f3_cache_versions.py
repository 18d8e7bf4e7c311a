"""cache versions: page caches shared by every worker are told of a save through the database

Revision ID: b7c1e2a9d4f3
Revises: 85909b05e887
Create Date: 2026-12-20 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7c1e2a9d4f3'
down_revision = '85909b05e887'
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table('cache_versions',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_cache_versions'))
    )
    # The rows exist from the start, so a save only ever updates one (services/cache_versions.py).
    op.bulk_insert(table, [{"name": "catalog", "version": 0}, {"name": "content", "version": 0}])


def downgrade():
    op.drop_table('cache_versions')
