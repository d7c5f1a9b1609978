"""CLI command groups; ``perptrader.cli`` assembles them."""
