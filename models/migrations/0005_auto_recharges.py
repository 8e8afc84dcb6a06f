from tortoise import migrations
from tortoise.migrations import operations as ops
from models.credits import RechargeState
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_usage_exports')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AutoRecharge',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='auto_recharges', on_delete=OnDelete.RESTRICT)),
                ('charge_key', fields.CharField(unique=True, max_length=64)),
                ('credits', fields.IntField()),
                ('amount_cents', fields.IntField()),
                ('state', fields.CharEnumField(description='PENDING: PENDING\nCREDITED: CREDITED\nDECLINED: DECLINED\nNOT_CHARGED: NOT_CHARGED', enum_type=RechargeState, max_length=11)),
                ('failure', fields.CharField(null=True, max_length=500)),
                ('entry', fields.ForeignKeyField('models.LedgerEntry', source_field='entry_id', null=True, db_constraint=True, to_field='id', related_name='auto_recharge', on_delete=OnDelete.RESTRICT)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('settled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'auto_recharge', 'app': 'models', 'indexes': [Index(fields=['state', 'created_at']), Index(fields=['account_id', 'state'])], 'pk_attr': 'id', 'table_description': 'One auto-recharge, written before its charge so that a crash after the charge is recovered.'},
            bases=['Model'],
        ),
    ]
