"""The streaming worker: faust app, topics, agents and tables (the I/O edge)."""
