"""The stream contract (envelope, topics, catalog) and the Faust app that processes it."""
