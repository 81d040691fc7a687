"""Running the service: configuration, clients, storage names, logs, metrics."""
