"""Timescale/PostgreSQL writer and migrations, WebSocket gateway and wall page, history API."""
