"""REST API for actors, groups, memberships, auth providers, directories and API tokens, and the
bearer-token authentication every app's API uses."""
