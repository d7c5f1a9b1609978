"""Where market data comes from. Every source yields ``Dataset`` objects; file importers
and (later) exchange backfill/websocket collectors plug in side by side."""
