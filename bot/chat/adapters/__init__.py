"""Chat platform adapters. Each turns platform events into ``bot.core.replies.Message`` and renders
``bot.core.replies.Reply`` in the platform's own markup; nothing outside this package imports a
chat library.
"""
