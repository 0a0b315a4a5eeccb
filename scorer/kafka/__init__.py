"""What every service and command shares to talk to Kafka: client and
producer settings, topic names and creation, compacted-topic followers,
dead-letter headers and the publishing commands."""
