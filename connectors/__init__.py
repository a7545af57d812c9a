"""connectors: the ways people reach a bot (HTTP API + web widget, Slack, OpenAI-compatible API).

A connector translates a platform's request into a botkit ``IncomingMessage`` and a botkit
reply back into the platform's format; it may import botkit, never the reverse.
"""
