"""Django's settings, made from AppConfig (nothing is read from a settings module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openanomaly.config import AppConfig
from openanomaly.domain.errors import ConfigError

HERE = Path(__file__).parent


def django_settings(config: AppConfig, cache: dict[str, Any]) -> dict[str, Any]:
    """``cache``: Django's default cache (bootstrap.web_cache), shared by api processes."""
    web = config.django
    if web.secret_key is None and not web.debug:
        raise ConfigError(
            "django.secret_key is required: it signs sessions and CSRF tokens. Set it from "
            "the environment (secret_key: ${OPENANOMALY_SECRET_KEY}), the same on every api "
            "process, or set django.debug: true on a development machine")
    secret = (web.secret_key.get_secret_value() if web.secret_key is not None
              else "debug-only-secret-key-not-for-production")
    return {
        "DEBUG": web.debug,
        "SECRET_KEY": secret,
        "ALLOWED_HOSTS": web.allowed_hosts,
        "CSRF_TRUSTED_ORIGINS": web.csrf_trusted_origins,
        "ROOT_URLCONF": "openanomaly.entrypoints.web.urls",
        "INSTALLED_APPS": ["django.contrib.contenttypes", "django.contrib.staticfiles"],
        "TEMPLATES": [{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [str(HERE / "templates")],
            "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
        }],
        "STATIC_URL": "/static/",
        "STATICFILES_DIRS": [str(HERE / "static")],
        # Static files straight from the package, by any api process, without a web server
        # in front or a collectstatic step.
        "WHITENOISE_USE_FINDERS": True,
        # Sessions travel in signed cookies, so any api process behind a load balancer
        # serves any request; app data lives only in the pipeline store.
        "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
        "SESSION_COOKIE_AGE": int(web.session_hours * 3600),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": web.secure_cookies,
        "CSRF_COOKIE_SECURE": web.secure_cookies,
        "DATABASES": {},
        "CACHES": {"default": cache},
        "MIDDLEWARE": [
            "openanomaly.entrypoints.web.metrics.RequestMetrics",
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "LOGGING_CONFIG": None,  # the project's own logging setup stays in charge
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
        "NINJA_PAGINATION_PER_PAGE": 100,
    }


def configure(config: AppConfig, cache: dict[str, Any]) -> None:
    """Configure Django for this process from ``config`` (once)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**django_settings(config, cache))
        django.setup()
