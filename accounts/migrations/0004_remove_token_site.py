from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_remove_gateway_token_has_site"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="token",
            name="site",
        ),
    ]
