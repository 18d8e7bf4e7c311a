"""WeChat Pay v3: payment api, transfer bills, stale notifies

Every payment taken so far went through API v2 (server default "v2"), so it is refunded through v2. Withdrawals
gain the 商家转账 bill's state, the package_info the member confirms with, and the payee's name (required from
¥2,000 up). Refused notifies gain the reason "stale" (a v3 notify signed outside the time window).

Revision ID: f1bd21ee97d0
Revises: d541364078a8
Create Date: 2026-12-07 06:22:28.115070

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f1bd21ee97d0'
down_revision = 'd541364078a8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api', sa.String(length=4), server_default='v2', nullable=False))

    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_state', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('transfer_package', sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column('payee_name', sa.String(length=64), nullable=True))

    with op.batch_alter_table('refused_notifies', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_refused_notifies_reason'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_refused_notifies_reason'), "reason IN ('bad_signature', 'malformed', 'dtd', 'too_large', 'stale')")


def downgrade():
    op.execute("DELETE FROM refused_notifies WHERE reason = 'stale'")
    with op.batch_alter_table('refused_notifies', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_refused_notifies_reason'), type_='check')
        batch_op.create_check_constraint(op.f('ck_refused_notifies_reason'), "reason IN ('bad_signature', 'malformed', 'dtd', 'too_large')")
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_column('payee_name')
        batch_op.drop_column('transfer_package')
        batch_op.drop_column('transfer_state')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('api')

