"""REST API for resources and policies."""
