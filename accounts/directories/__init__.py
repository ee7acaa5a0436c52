"""Directory sync (Google Workspace, Okta, Entra ID pull adapters) and the SCIM 2.0 server."""
