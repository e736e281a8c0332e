"""Alerts from Alertmanager, as the bot reads them: label matchers (``matchers``), the
webhook's payload (``payload``) and how one alert group reads in chat (``wording``). Pure:
no HTTP, no Redis, no chat platform; the receiver (``bot.chat.alertreceiver``) composes them.
"""
