"""What every long-running service shares: the web port (metrics, health,
readiness), build metrics, and running until SIGTERM."""
