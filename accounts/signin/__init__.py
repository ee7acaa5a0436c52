"""Sign-in: per-account sign-in pages, local passwords with brute-force limits, email one-time
codes, OpenID Connect (generic, Google Workspace, Okta, Entra ID) and portal sessions."""
