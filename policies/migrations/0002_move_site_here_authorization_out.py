# Site moves here from gateways (resources live on a site) and Authorization moves to gateways
# (it names devices and gateways). Both keep their tables (gateways_site, policies_authorization),
# so this is a change of Django's model state only: no SQL runs.
import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_initial"),
        ("policies", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Site",
                    fields=[
                        (
                            "id",
                            models.UUIDField(
                                default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("name", models.CharField(max_length=255)),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="accounts.account",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "gateways_site",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("account", "name"), name="site_name_unique"
                            )
                        ],
                    },
                ),
                migrations.AlterField(
                    model_name="resource",
                    name="site",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="resources",
                        to="policies.site",
                    ),
                ),
                migrations.DeleteModel(
                    name="Authorization",
                ),
            ],
        ),
    ]
