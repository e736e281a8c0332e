"""The chat side (asyncio): adapters, dispatch, parsing, confirmations, rendering.
It never imports docker (make lint checks it).
"""
