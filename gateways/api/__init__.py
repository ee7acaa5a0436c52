"""REST API for sites, gateways, gateway tokens, client and static devices and authorizations."""
