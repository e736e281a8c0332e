"""Deploy notices: the story of every change to the swarm, posted where config routes it.

Two sources, one notice per change:
- Jobs of the bot post their own notice when they end (who, what changed, outcome, time),
  and *claim* their stack or service while they run, so the watcher stays quiet about them
  (``rooms``: posting, claims and markers; kept in Redis by ``bot.queue.noticestore``).
- The watcher (``watcher``) compares the swarm with what it last saw; what to tell is
  decided by pure functions (``decide``) and said in one voice (``wording``).
"""

from bot.swarm.notices.decide import Pending, summarize
from bot.swarm.notices.rooms import Notices
from bot.swarm.notices.watcher import DRIFT_POKE, Watcher

__all__ = ["DRIFT_POKE", "Notices", "Pending", "Watcher", "summarize"]
