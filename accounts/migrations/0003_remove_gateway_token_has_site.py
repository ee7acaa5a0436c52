# The binding of a gateway token to its site moves to gateways.GatewayToken (the identity layer
# no longer knows about sites). Two steps, so the move can also be reversed: this check goes first,
# gateways 0003 copies Token.site into GatewayToken (it declares run_before 0004), 0004 drops the
# column. Nothing here names the gateways app: the upper layer orders itself around this one.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="token",
            name="gateway_token_has_site",
        ),
    ]
