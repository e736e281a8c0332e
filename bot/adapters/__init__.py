"""Chat platform adapters. Each turns platform events into ``bot.chat.Message`` and renders
``bot.chat.Reply`` in the platform's own markup; nothing outside this package imports a
chat library.
"""
