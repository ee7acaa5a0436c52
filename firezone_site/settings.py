"""One env-driven settings module.

Embedded default (nothing set): SQLite under ``var/``, a generated SECRET_KEY kept in
``var/secret_key``, Celery over kombu's filesystem transport under ``var/broker`` and the
database-backed channel layer (``firezone_site.channel_layer``), so daphne, the Celery worker and
beat can run as separate processes with no service to install.

Production: set ``DATABASE_URL`` (postgres://...), ``REDIS_URL`` (redis://...), ``SECRET_KEY``,
``ALLOWED_HOSTS`` and leave ``DEBUG`` off. A misconfiguration stops the process at start with a
message that names the variable to set.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

# Generic admin/queryset classes (ModelAdmin[Model]) at runtime, for the type hints.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FZ_VAR_DIR", BASE_DIR / "var"))


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: set it to 1/0, true/false")


def _list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, Any]:
    """Parse DATABASE_URL (postgres://user:pass@host:port/name or sqlite:///path)."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        if not parsed.path.strip("/"):
            raise ImproperlyConfigured(
                "DATABASE_URL has no database name: use postgres://USER@HOST:PORT/NAME"
            )
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # Persistent connections: websocket consumers hit the database from worker threads, and
            # a new PostgreSQL connection per call costs more than the call.
            "CONN_MAX_AGE": int(os.environ.get("DATABASE_CONN_MAX_AGE", "600")),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if path.startswith("//"):
            path = path[1:]
        elif path.startswith("/"):
            path = path[1:] if not Path(path).is_absolute() else path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path or str(VAR_DIR / "db.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parsed.scheme!r} is not supported: use postgres://... or sqlite:///..."
    )


DEBUG = _bool("DEBUG", False)
FZ_EMBEDDED = "DATABASE_URL" not in os.environ and "REDIS_URL" not in os.environ
TESTING = _bool("FZ_TESTING", False)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters: set a longer one")
        return key
    if "DATABASE_URL" in os.environ and not DEBUG and not TESTING:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: production settings (DATABASE_URL is set) need SECRET_KEY "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = _list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if not TESTING else ["*"]
)
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "channels",
    "csp",
    "firezone_site",
    "accounts",
    "policies",
    "gateways",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "firezone_site.urls"
WSGI_APPLICATION = "firezone_site.wsgi.application"
ASGI_APPLICATION = "firezone_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# Parallel test runs (several developers, CI) share one PostgreSQL: a suffix keeps their test
# databases apart.
DATABASES["default"]["TEST"] = {
    "NAME": f"test_fz_{os.environ.get('FZ_TEST_DB_SUFFIX', os.getpid())}"
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the app and project static dirs: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True

AUTHENTICATION_BACKENDS = [
    "accounts.auth.AccountEmailBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LOGIN_URL = "/sign-in/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/sign-in/"

# Redis: channel layer + Celery broker in production; embedded alternatives otherwise.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    if urlparse(REDIS_URL).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured("REDIS_URL must start with redis:// or rediss://")
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # No read timeout: channels_redis blocks on Redis for seconds at a time, and
                # redis-py's default 5 s timeout would crash idle consumers (channels_redis#422).
                # redis-py 8 caps a pool at 100 connections and then raises at once: a portal
                # with ~1,000 clients pushing at 200 requests/s needs more (benchmarks/
                # authorization.py hit "Too many connections" and 1011 closes with the cap).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "max_connections": int(os.environ.get("FZ_REDIS_MAX_CONNECTIONS", "2000")),
                    }
                ],
                "prefix": os.environ.get("FZ_CHANNEL_PREFIX", "fz"),
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "firezone_site.channel_layer.DatabaseChannelLayer"}}
    _broker = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "store_processed": False,
        "control_folder": str(_broker / "control"),
    }

CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", False)
# Several portals (or test runs) can share one Redis when each has its own queue.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("FZ_CELERY_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Gateways enforce expires_at themselves; the portal's expiry job keeps the audit trail and the
# gateways' state in line within seconds.
CELERY_BEAT_SCHEDULE: dict[str, Any] = {
    "expire-authorizations": {"task": "gateways.expire_authorizations", "schedule": 10.0},
    "sweep-stale-gateways": {"task": "gateways.sweep_stale_gateways", "schedule": 60.0},
    "remove-offline-gateways": {"task": "gateways.remove_offline_gateways", "schedule": 3600.0},
    # Also how soon a static device's time-window condition takes effect at a window's edge.
    "resync-static-devices": {"task": "gateways.resync_static_devices", "schedule": 60.0},
    "rotate-gateway-tokens": {"task": "gateways.rotate_gateway_tokens", "schedule": 3600.0},
    "delete-expired-tokens": {"task": "accounts.delete_expired_tokens", "schedule": 3600.0},
    "delete-expired-sign-in-codes": {
        "task": "accounts.delete_expired_sign_in_codes",
        "schedule": 3600.0,
    },
}

# The REST API (/api/v1/): bearer API tokens only, JSON only, RFC 9457 problems for every error.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "firezone_site.api.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.authentication.MayManageAccount"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "firezone_site.api.pagination.CursorPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["firezone_site.api.throttling.TokenRateThrottle"],
    "EXCEPTION_HANDLER": "firezone_site.api.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Requests per token (Django-REST-framework rate syntax: N/s, N/min, N/hour, N/day), counted in
# the default cache (CACHES below: Redis in production, so every portal process shares them).
FZ_API_RATE = os.environ.get("FZ_API_RATE", "1200/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "Firezone-py API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Manage an account: actors, groups, resources, sites, policies, gateways, "
    "devices and tokens. Authenticate with an API token from Settings "
    "(`Authorization: Bearer fza_...`). Errors are RFC 9457 problem details.",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {},
}
# Security headers. Production (DEBUG off, not embedded HTTP on loopback) runs behind TLS.
SECURE_TLS = _bool("FZ_TLS", not DEBUG and not FZ_EMBEDDED and not TESTING)
SESSION_COOKIE_SECURE = SECURE_TLS
CSRF_COOKIE_SECURE = SECURE_TLS
SECURE_SSL_REDIRECT = SECURE_TLS and _bool("FZ_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = 31536000 if SECURE_TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_TLS
SECURE_HSTS_PRELOAD = SECURE_TLS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE_TLS else None
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): the UI has no inline script, style or handler (htmx's
# own indicator <style> is switched off in base.html), so nothing inline is allowed, nothing from
# other origins, and no page may be framed. The browser suite fails on any violation.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    # One record is one line: control characters from agents or browsers are escaped.
    "formatters": {
        "plain": {
            "()": "firezone_site.logsafe.EscapingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# The URL gateways and clients reach the portal at (shown in deploy instructions); when unset,
# the UI uses the origin of the admin's own request.
FZ_PORTAL_URL = os.environ.get("FZ_PORTAL_URL", "")

# Fixed product numbers (product.md).
FZ_TUNNEL_IPV4 = "100.64.0.0/11"
FZ_TUNNEL_IPV6 = "fd00:2021:1111::/107"
FZ_GATEWAY_PORT = 51820
FZ_HEARTBEAT_TIMEOUT_S = float(os.environ.get("FZ_HEARTBEAT_TIMEOUT_S", "37"))
# Sent to gateways in ``init`` (protocol.HEARTBEAT_INTERVAL_S by default). A lost push is repaired
# within about one interval (state digest in heartbeat_reply); keep it well under the timeout.
FZ_HEARTBEAT_INTERVAL_S = float(os.environ.get("FZ_HEARTBEAT_INTERVAL_S", "10"))
# Every Nth heartbeat_reply carries the state digest (0: none, no convergence). A lost push is
# repaired within about N intervals; each digest costs one fingerprint query (docs/protocol.md).
FZ_STATE_DIGEST_EVERY = int(os.environ.get("FZ_STATE_DIGEST_EVERY", "1"))
# Client agents (issue 10): how long a dynamic authorization lasts at most (the token's expiry and
# time-window conditions may end it earlier), how long the portal waits for the gateway's ack, and
# the reverse proxies whose X-Forwarded-For is believed (comma-separated CIDRs; the first hop from
# the right that is not one of them is the client's remote IP).
FZ_AUTHORIZATION_MAX_AGE_S = int(os.environ.get("FZ_AUTHORIZATION_MAX_AGE_S", "86400"))
FZ_AUTHORIZATION_ACK_TIMEOUT_S = float(os.environ.get("FZ_AUTHORIZATION_ACK_TIMEOUT_S", "15"))
FZ_TRUSTED_PROXIES = [
    p.strip() for p in os.environ.get("FZ_TRUSTED_PROXIES", "").split(",") if p.strip()
]


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a positive whole number")
    return int(raw)


# One site token must not be able to create gateways (and take tunnel addresses) without bound:
# a new external_id beyond this many gateways in the site is refused (close 4008).
FZ_MAX_GATEWAYS_PER_SITE = _positive_int("FZ_MAX_GATEWAYS_PER_SITE", 100)
# Gateways offline for longer than this are removed (Celery beat), releasing their addresses.
FZ_GATEWAY_RETENTION_DAYS = _positive_int("FZ_GATEWAY_RETENTION_DAYS", 30)
# --- sign-in (accounts.signin) -----------------------------------------------------------------
# The cache holds the brute-force counters: Redis in production (shared by every web process),
# process memory in the embedded default (one daphne process serves every sign-in there).
if REDIS_URL:
    CACHES: dict[str, Any] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("FZ_CACHE_PREFIX", "fz"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def email_from_env() -> dict[str, Any]:
    """Mail settings: ``EMAIL_URL`` (smtp://user:pass@host:587, smtps://... for implicit TLS,
    ``?starttls=0`` to turn STARTTLS off) or ``SMTP_HOST``/``SMTP_PORT``/``SMTP_USER``/
    ``SMTP_PASSWORD``/``SMTP_TLS``/``SMTP_SSL``; neither set: mails are written to ``var/mail/``."""
    url = os.environ.get("EMAIL_URL", "")
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in {"smtp", "smtps"}:
            raise ImproperlyConfigured("EMAIL_URL must start with smtp:// or smtps://")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        ssl = parsed.scheme == "smtps"
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": parsed.hostname or "localhost",
            "EMAIL_PORT": parsed.port or (465 if ssl else 587),
            "EMAIL_HOST_USER": unquote(parsed.username or ""),
            "EMAIL_HOST_PASSWORD": unquote(parsed.password or ""),
            "EMAIL_USE_SSL": ssl,
            "EMAIL_USE_TLS": not ssl and query.get("starttls", "1") not in {"0", "false", "no"},
        }
    if os.environ.get("SMTP_HOST"):
        ssl = _bool("SMTP_SSL", False)
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": os.environ["SMTP_HOST"],
            "EMAIL_PORT": int(os.environ.get("SMTP_PORT", "465" if ssl else "587")),
            "EMAIL_HOST_USER": os.environ.get("SMTP_USER", ""),
            "EMAIL_HOST_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
            "EMAIL_USE_SSL": ssl,
            "EMAIL_USE_TLS": not ssl and _bool("SMTP_TLS", True),
        }
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(VAR_DIR / "mail"),
    }


_email = email_from_env()
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = os.environ.get("EMAIL_FROM", "Firezone <firezone@localhost>")

# Brute force: failures per account+email and per source IP within the window lock that key for
# the lockout period.
FZ_SIGNIN_MAX_FAILURES = int(os.environ.get("FZ_SIGNIN_MAX_FAILURES", "10"))
FZ_SIGNIN_MAX_FAILURES_PER_IP = int(os.environ.get("FZ_SIGNIN_MAX_FAILURES_PER_IP", "100"))
FZ_SIGNIN_WINDOW_S = int(os.environ.get("FZ_SIGNIN_WINDOW_S", "900"))
FZ_SIGNIN_LOCKOUT_S = int(os.environ.get("FZ_SIGNIN_LOCKOUT_S", "900"))
FZ_SIGNIN_MAX_MAILS = int(os.environ.get("FZ_SIGNIN_MAX_MAILS", "5"))
FZ_SIGNIN_MAX_DEVICE_STARTS = int(os.environ.get("FZ_SIGNIN_MAX_DEVICE_STARTS", "30"))
