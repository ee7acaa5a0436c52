# Last step of the move: drop gateways.Site from the model state (its table is policies.Site's now)
# and carry the content types over, so permissions granted on the models keep pointing at them.
from django.db import migrations

MOVED = [("gateways", "policies", "site"), ("policies", "gateways", "authorization")]


def _move_content_types(apps, schema_editor, moves):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for old_app, new_app, model in moves:
        if ContentType.objects.using(db).filter(app_label=new_app, model=model).exists():
            continue
        ContentType.objects.using(db).filter(app_label=old_app, model=model).update(
            app_label=new_app
        )


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    _move_content_types(apps, schema_editor, MOVED)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    _move_content_types(apps, schema_editor, [(new, old, m) for old, new, m in MOVED])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_remove_token_site"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("gateways", "0003_site_moved_authorization_gateway_token"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="Site")],
        ),
        migrations.RunPython(forwards, backwards),
    ]
