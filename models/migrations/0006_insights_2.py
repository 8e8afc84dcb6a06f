"""Carrier ids stop being unique across the deployment (0006_insights made them unique per
account).

PostgreSQL drops the constraint. SQLite cannot drop a column's UNIQUE: the table is
rebuilt, and Tortoise's own rebuild fails on a table other tables reference (its DROP
TABLE runs with foreign keys on, and ledger entries point at messages) and loses the
table's indexes. So SQLite rebuilds it here the way the SQLite manual prescribes
(sqlite.org/lang_altertable.html, "other kinds of table schema changes"): foreign keys off,
which works only outside a transaction (hence a migration that is not atomic), then one
transaction that copies the table, puts its indexes back, checks every foreign key, and
commits.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.transactions import in_transaction

_INLINE_UNIQUE = '"provider_message_id" VARCHAR(128)  UNIQUE'
_PLAIN = '"provider_message_id" VARCHAR(128)'


class DropDeploymentWideCarrierIds(ops.AlterField):
    async def database_forward(
        self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None
    ) -> None:
        if state_editor is None or state_editor.DIALECT != "sqlite":
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        client = state_editor.client
        await client.execute_script("PRAGMA foreign_keys=OFF")
        try:
            async with in_transaction(client.connection_name) as conn:
                await _rebuild_message_table(conn)
        finally:
            await client.execute_script("PRAGMA foreign_keys=ON")


async def _rebuild_message_table(conn: Any) -> None:
    _, rows = await conn.execute_query(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'message' AND sql IS NOT NULL"
    )
    table = next(row[1] for row in rows if row[0] == "table")
    indexes = [row[1] for row in rows if row[0] == "index"]
    if _INLINE_UNIQUE not in table:
        raise RuntimeError("message.provider_message_id is not the column 0002 created")
    new_table = table.replace(_INLINE_UNIQUE, _PLAIN).replace(
        'CREATE TABLE "message"', 'CREATE TABLE "new__message"', 1
    )
    await conn.execute_query(new_table)
    await conn.execute_query('INSERT INTO "new__message" SELECT * FROM "message"')
    await conn.execute_query('DROP TABLE "message"')
    await conn.execute_query('ALTER TABLE "new__message" RENAME TO "message"')
    for index in indexes:
        await conn.execute_query(index)
    _, broken = await conn.execute_query("PRAGMA foreign_key_check")
    if broken:
        raise RuntimeError(f"foreign keys broken by the rebuild: {list(broken)[:5]}")


class Migration(migrations.Migration):
    dependencies = [("models", "0006_insights")]

    initial = False
    # PRAGMA foreign_keys is a no-op inside a transaction (SQLite's rebuild opens its own).
    atomic = False

    operations = [
        DropDeploymentWideCarrierIds(
            model_name="Message",
            name="provider_message_id",
            field=fields.CharField(null=True, max_length=128),
        ),
    ]
