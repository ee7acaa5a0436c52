# Site now lives in policies and Authorization here, both on their old tables (state only).
# GatewayToken replaces accounts.Token.site: it is created and filled from that column here,
# before accounts 0004 drops it (run_before), so no gateway token loses its site.
import uuid

import django.db.models.deletion
from django.db import migrations, models


def bind_gateway_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    Token = apps.get_model("accounts", "Token")
    GatewayToken = apps.get_model("gateways", "GatewayToken")
    db = schema_editor.connection.alias
    rows = list(
        Token.objects.using(db)
        .filter(site__isnull=False)
        .values_list("id", "account_id", "site_id", "created_at")
    )
    GatewayToken.objects.using(db).bulk_create(
        [
            GatewayToken(id=uuid.uuid4(), account_id=account_id, token_id=token_id, site_id=site_id)
            for token_id, account_id, site_id, _ in rows
        ],
        batch_size=1000,
    )
    # auto_now_add stamped the migration's time; a binding is as old as its token.
    for token_id, _, _, created_at in rows:
        GatewayToken.objects.using(db).filter(token_id=token_id).update(created_at=created_at)


def unbind_gateway_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    Token = apps.get_model("accounts", "Token")
    GatewayToken = apps.get_model("gateways", "GatewayToken")
    db = schema_editor.connection.alias
    for token_id, site_id in GatewayToken.objects.using(db).values_list("token_id", "site_id"):
        Token.objects.using(db).filter(pk=token_id).update(site_id=site_id)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_remove_gateway_token_has_site"),
        ("gateways", "0002_static_devices"),
        ("policies", "0002_move_site_here_authorization_out"),
    ]
    run_before = [
        ("accounts", "0004_remove_token_site"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="gateway",
                    name="site",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="gateways",
                        to="policies.site",
                    ),
                ),
                migrations.AlterField(
                    model_name="staticdeviceassignment",
                    name="site",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="static_assignments",
                        to="policies.site",
                    ),
                ),
                migrations.CreateModel(
                    name="Authorization",
                    fields=[
                        (
                            "id",
                            models.UUIDField(
                                default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("actor_email", models.CharField(blank=True, default="", max_length=254)),
                        ("resource_name", models.CharField(blank=True, default="", max_length=255)),
                        (
                            "resource_address",
                            models.CharField(blank=True, default="", max_length=253),
                        ),
                        ("client_remote_ip", models.GenericIPAddressField(blank=True, null=True)),
                        ("expires_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("revoke_reason", models.CharField(blank=True, default="", max_length=64)),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="accounts.account",
                            ),
                        ),
                        (
                            "actor",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="authorizations",
                                to="accounts.actor",
                            ),
                        ),
                        (
                            "device",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="authorizations",
                                to="gateways.clientdevice",
                            ),
                        ),
                        (
                            "gateway",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="authorizations",
                                to="gateways.gateway",
                            ),
                        ),
                        (
                            "policy",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="authorizations",
                                to="policies.policy",
                            ),
                        ),
                        (
                            "resource",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="authorizations",
                                to="policies.resource",
                            ),
                        ),
                        (
                            "token",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="accounts.token",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "policies_authorization",
                        "indexes": [
                            models.Index(
                                fields=["account", "-created_at"],
                                name="policies_au_account_d9f442_idx",
                            ),
                            models.Index(
                                fields=["gateway", "revoked_at"],
                                name="policies_au_gateway_2240f2_idx",
                            ),
                            models.Index(
                                fields=["policy", "revoked_at"],
                                name="policies_au_policy__f1c669_idx",
                            ),
                        ],
                    },
                ),
            ],
        ),
        migrations.CreateModel(
            name="GatewayToken",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.account",
                    ),
                ),
                (
                    "site",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="gateway_tokens",
                        to="policies.site",
                    ),
                ),
                (
                    "token",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="gateway_binding",
                        to="accounts.token",
                    ),
                ),
            ],
        ),
        migrations.RunPython(bind_gateway_tokens, unbind_gateway_tokens),
    ]
