from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.enums import WeekStart
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_usage')]

    initial = False

    operations = [
        ops.CreateModel(
            name='UsageExport',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='usage_exports', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='usage_exports', on_delete=OnDelete.RESTRICT)),
                ('token', fields.ForeignKeyField('models.ApiToken', source_field='token_id', db_constraint=True, to_field='id', related_name='usage_exports', on_delete=OnDelete.RESTRICT)),
                ('first_day', fields.DateField()),
                ('last_day', fields.DateField()),
                ('granularity', fields.CharField(max_length=8)),
                ('group_by', fields.CharField(max_length=16)),
                ('format', fields.CharField(max_length=8)),
                ('week_start', fields.CharEnumField(description='MONDAY: MONDAY\nSUNDAY: SUNDAY', enum_type=WeekStart, max_length=8)),
                ('group_ids', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('row_count', fields.IntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'usage_export', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
