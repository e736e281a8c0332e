"""The queue between the two processes: Redis streams with consumer groups.

One stream of jobs (the bot produces, workers consume), one stream of results per bot
inbox. Acknowledged delivery: an entry stays pending until it is handled, so a process
that dies mid-way finds it again. Modules: ``keys`` (every Redis key, in one place),
``scripts`` (every Lua script), ``clients`` (connection pools), ``producer`` (the bot's
side), ``inbox`` (results back to the bot), ``consumer`` (the worker's side: reading,
leases, heartbeats, hand-over), ``records`` (the audit trail's Redis side) and ``stats``
(the figures operators alert on).
"""
