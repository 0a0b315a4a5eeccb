"""The streaming worker (the I/O edge): loop, tasks, store, followers, web, metrics."""
