from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import AlertState, BudgetMode, DeliveryStatus, NoticeKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_insights_2')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BalanceAlert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='balance_alerts', on_delete=OnDelete.RESTRICT)),
                ('threshold_credits', fields.IntField()),
                ('state', fields.CharEnumField(description='ARMED: ARMED\nFIRED: FIRED', enum_type=AlertState, max_length=5)),
                ('last_fired_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'balance_alert', 'app': 'models', 'unique_together': (('account', 'threshold_credits'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='InboxPeriodUsage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('inbox', fields.ForeignKeyField('models.Inbox', source_field='inbox_id', db_constraint=True, to_field='id', related_name='period_usage', on_delete=OnDelete.RESTRICT)),
                ('period_index', fields.IntField()),
                ('credits', fields.IntField()),
                ('warned', fields.BooleanField(default=False)),
                ('reached', fields.BooleanField(default=False)),
            ],
            options={'table': 'inbox_period_usage', 'app': 'models', 'unique_together': (('inbox', 'period_index'),), 'pk_attr': 'id', 'table_description': "Credits of one inbox's messages in one subscription month, net of refunds."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notice',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(description='BALANCE_BELOW_THRESHOLD: BALANCE_BELOW_THRESHOLD\nBALANCE_RECOVERED: BALANCE_RECOVERED\nBUDGET_WARNING: BUDGET_WARNING\nBUDGET_REACHED: BUDGET_REACHED\nAUTO_RECHARGE_FAILED: AUTO_RECHARGE_FAILED\nAUTO_RECHARGE_DISABLED: AUTO_RECHARGE_DISABLED', enum_type=NoticeKind, max_length=24)),
                ('threshold_credits', fields.IntField(null=True)),
                ('inbox', fields.ForeignKeyField('models.Inbox', source_field='inbox_id', null=True, db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('value', fields.IntField()),
                ('event_id', fields.CharField(unique=True, max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notice', 'app': 'models', 'indexes': [Index(fields=['account_id', 'id'])], 'pk_attr': 'id', 'table_description': 'Something an alert or a budget noticed. Append-only.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='webhook_endpoints', on_delete=OnDelete.RESTRICT)),
                ('url', fields.CharField(max_length=2048)),
                ('events', fields.CharField(max_length=200)),
                ('secret', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_endpoint', 'app': 'models', 'indexes': [Index(fields=['account_id', 'deleted_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('endpoint', fields.ForeignKeyField('models.WebhookEndpoint', source_field='endpoint_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.RESTRICT)),
                ('notice', fields.ForeignKeyField('models.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.RESTRICT)),
                ('payload', fields.TextField(unique=False)),
                ('status', fields.CharEnumField(description='PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED', enum_type=DeliveryStatus, max_length=9)),
                ('attempts', fields.IntField(default=0)),
                ('last_status_code', fields.IntField(null=True)),
                ('last_error', fields.CharField(null=True, max_length=500)),
                ('next_attempt_us', fields.BigIntField(null=True)),
                ('claimed_until_us', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_us']), Index(fields=['endpoint_id', 'id'])], 'pk_attr': 'id', 'table_description': "One notice to one endpoint: the outbox row, written in the notice's transaction."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Account',
            name='alert_fire_below',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Account',
            name='alert_recover_at',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Inbox',
            name='budget_credits',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Inbox',
            name='budget_mode',
            field=fields.CharEnumField(null=True, description='SOFT: SOFT\nHARD: HARD', enum_type=BudgetMode, max_length=4),
        ),
        # Messages stored before this migration count in their month's usage (RULES.md:
        # "including those from before the budget was set"): the month is the charge's.
        ops.RunSQL(
        "INSERT INTO inbox_period_usage (inbox_id, period_index, credits, warned, reached) "
        "SELECT m.inbox_id, e.period_index, SUM(m.credits), FALSE, FALSE FROM message m "
        "JOIN (SELECT message_id, MIN(period_index) AS period_index FROM ledger_entry "
        "WHERE message_id IS NOT NULL AND kind IN ('OUTBOUND_MESSAGE', 'INBOUND_MESSAGE') "
        "GROUP BY message_id) e ON e.message_id = m.id "
        "WHERE m.refunded_at IS NULL GROUP BY m.inbox_id, e.period_index",
        reverse_sql="DELETE FROM inbox_period_usage",
        ),
    ]
