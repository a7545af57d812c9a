"""The Slack connector: mentions (answered in threads), thread follow-ups and direct messages.

- :mod:`connectors.slack.translate`: pure functions, Slack events to
  :class:`~botkit.messages.IncomingMessage` and replies to Block Kit.
- :mod:`connectors.slack.mrkdwn`: Markdown to mrkdwn, and splitting at Slack's limits.
- :mod:`connectors.slack.handler`: :class:`SlackConnector`, the Bolt app and its listeners.
- :mod:`connectors.slack.delivery`: exactly-once events (claim, ack, process, recover).
- :mod:`connectors.slack.turns`: one turn (placeholder, streamed ``chat.update``, handoff).
- :mod:`connectors.slack.asgi`: ``mount(app, bot)`` at ``/slack/events`` (``botkit serve``).
- :mod:`connectors.slack.socket_mode`: ``botkit slack --socket``.

Needs the ``slack`` extra (``pip install 'botkit[slack]'``); importing this package alone
does not import Bolt.
"""

SLACK_EXTRA_HINT = "install the Slack extra: pip install 'botkit[slack]'"
