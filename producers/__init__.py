"""Publisher SDK, HTTP ingest API, sector simulators and file replay."""
