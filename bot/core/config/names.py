"""The names config keys and environment variables use, and the shapes of user and room IDs.

Kept apart from the model so that the wire format (``bot.core.wire``) and the commands can
know what a user ID looks like without the whole config machinery.
"""

from __future__ import annotations

import re

from bot.core.ids import GIT_REF

GIT_BRANCH = GIT_REF

DEFAULT_CONFIG_ENV = "SWARMBOT_CONFIG"
REDIS_URL_ENV = "SWARMBOT_REDIS_URL"
SIGNING_SECRET_ENV = "SWARMBOT_SIGNING_SECRET"  # noqa: S105 (a variable name)
SIGNING_SECRET_FILE_ENV = "SWARMBOT_SIGNING_SECRET_FILE"  # noqa: S105
MIN_SECRET_LENGTH = 32

# Who deploys a change by policy (changes.policy "auto"): no chat platform makes this ID.
AUTOMATION_USER = "swarmbot:auto"
USER_ID = re.compile(
    r"^(swarmbot:auto|console:[A-Za-z0-9._-]{1,64}|@[a-z0-9._=/+-]{1,255}:[A-Za-z0-9.:-]{1,255}|slack:[A-Z0-9]{2,32})$"
)
# Room IDs are opaque (room version 12 dropped the ":server" part); aliases keep it.
ROOM = re.compile(
    r"^(![A-Za-z0-9._~+/=-]{1,255}(:[A-Za-z0-9.:-]{1,255})?|#[^:\s]{1,255}:[A-Za-z0-9.:-]{1,255})$"
)
VARIABLE_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
