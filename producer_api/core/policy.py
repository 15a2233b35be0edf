"""Who may write where: the service's topic policy and an API key's topic patterns."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache

from producer_api.config import ApiKey, Settings
from producer_api.core.errors import Forbidden


@lru_cache(maxsize=4096)
def _matches_any(topic: str, patterns: tuple[str, ...]) -> bool:
    # Settings never change while the service runs, so a topic's answer is worked out once, not per message.
    return any(fnmatchcase(topic, pattern) for pattern in patterns)


def authorize_topics(settings: Settings, key: ApiKey | None, topics: set[str]) -> None:
    """Refuse (403) the whole request if the topic policy or the caller's key forbids any of its topics."""
    for topic in sorted(topics):
        if _matches_any(topic, settings.topic_deny) or not _matches_any(topic, settings.topic_allow):
            raise Forbidden(f"Writing to topic '{topic}' is not allowed by this service's topic policy")
        if key is not None and not _matches_any(topic, key.topics):
            raise Forbidden(f"API key '{key.name}' may not write to topic '{topic}'")
