"""The REST API's shared machinery (no app models here): RFC 9457 problem details, cursor
pagination, ETag/If-Match preconditions, per-token rate limits and the OpenAPI schema class.

Each app's endpoints live in its own ``api/`` package; authentication (bearer API tokens) is
``accounts.api.authentication`` because tokens are accounts' business."""
