"""The audit log, and carrier ids unique per account (their deployment-wide uniqueness goes in
0006_insights_2, which cannot run in a transaction on SQLite)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import AuditAction
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0005_auto_recharges')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='audit_entries', on_delete=OnDelete.RESTRICT)),
                ('action', fields.CharEnumField(description='ACCOUNT_UPDATED: ACCOUNT_UPDATED\nMEMBER_CREATED: MEMBER_CREATED\nINBOX_CREATED: INBOX_CREATED\nAPI_TOKEN_CREATED: API_TOKEN_CREATED\nAPI_TOKEN_REVOKED: API_TOKEN_REVOKED\nPAYMENT_METHOD_SET: PAYMENT_METHOD_SET\nAUTO_RECHARGE_UPDATED: AUTO_RECHARGE_UPDATED\nAUTO_RECHARGE_DISABLED: AUTO_RECHARGE_DISABLED\nBALANCE_ALERTS_SET: BALANCE_ALERTS_SET\nINBOX_BUDGET_SET: INBOX_BUDGET_SET\nWEBHOOK_ENDPOINT_CREATED: WEBHOOK_ENDPOINT_CREATED\nWEBHOOK_ENDPOINT_DELETED: WEBHOOK_ENDPOINT_DELETED', enum_type=AuditAction, max_length=32)),
                ('actor', fields.ForeignKeyField('models.Member', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='audit_entries', on_delete=OnDelete.RESTRICT)),
                ('target_id', fields.BigIntField(null=True)),
                ('changes', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('ip', fields.CharField(null=True, max_length=45)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'audit_entry', 'app': 'models', 'indexes': [Index(fields=['account_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['provider_message_id']),
        ),
        ops.AddConstraint(
            model_name='Message',
            constraint=UniqueConstraint(fields=('account', 'provider_message_id'), name=None),
        ),
    ]
