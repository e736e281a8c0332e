"""Configuration: one TOML file, validated up front with exact key paths in every error.

Operators edit this file by hand, usually in a hurry, so every problem names the key
(``roles.ops.stacks[1]``) and what is wrong with it, and unknown keys are errors: a typo
such as ``user = [...]`` for ``users`` must not silently leave a role empty.

The package: ``model`` (the frozen dataclasses), ``defaults`` (every key's type and default,
the one place they are written), ``names`` (environment variables and ID shapes),
``secrets`` (where a secret is read from), one module per group of sections (``access``,
``chat``, ``sources``), and ``parse``, which only assembles.
"""

from bot.core.config.chat import notice_rooms_unserved
from bot.core.config.defaults import POLICIES, RESOLVE_IMAGE_MODES, SCHEMA, SEMVER_LEVELS
from bot.core.config.model import (
    AlertRoute,
    AlertsConfig,
    ChangesConfig,
    Config,
    ConfigError,
    GitConfig,
    MatrixConfig,
    NoticeRoute,
    RegistryConfig,
    Role,
    Secret,
    SlackConfig,
    WebhookConfig,
)
from bot.core.config.names import (
    AUTOMATION_USER,
    DEFAULT_CONFIG_ENV,
    MIN_SECRET_LENGTH,
    REDIS_URL_ENV,
    ROOM,
    SIGNING_SECRET_ENV,
    SIGNING_SECRET_FILE_ENV,
    USER_ID,
    VARIABLE_NAME,
)
from bot.core.config.parse import load, parse

__all__ = [
    "AUTOMATION_USER",
    "DEFAULT_CONFIG_ENV",
    "MIN_SECRET_LENGTH",
    "POLICIES",
    "REDIS_URL_ENV",
    "RESOLVE_IMAGE_MODES",
    "ROOM",
    "SCHEMA",
    "SEMVER_LEVELS",
    "SIGNING_SECRET_ENV",
    "SIGNING_SECRET_FILE_ENV",
    "USER_ID",
    "VARIABLE_NAME",
    "AlertRoute",
    "AlertsConfig",
    "ChangesConfig",
    "Config",
    "ConfigError",
    "GitConfig",
    "MatrixConfig",
    "NoticeRoute",
    "RegistryConfig",
    "Role",
    "Secret",
    "SlackConfig",
    "WebhookConfig",
    "load",
    "notice_rooms_unserved",
    "parse",
]
