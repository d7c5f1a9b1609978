"""Telegram: alerts from the trading journal and commands answered from it.

``perptrader notify run`` tails the journal's audit log (fills, liquidations, the kill
switch, denied orders, breakers, runs starting and ending), watches the latest balance
of each run for liquidation risk and sends a summary when a UTC day of bars closes; it
answers /status, /positions, /pnl, /daily, /stop and /resume from the chats in
``notify.chat_ids`` only, with the same journal readers as ``trade status`` and the same
control command as ``trade stop|resume``. Every other chat gets no answer.

    alerts.py    audit rows and balances -> alert texts (a cursor kept in the journal)
    replies.py   the commands: chat id + text -> reply text (or None: not allowed)
    secrets.py   the bot token (environment or a 0600 file), masked in every log line
    bot.py       python-telegram-bot: polling, handlers, sending, the journal loop
"""
