"""Side-by-side benchmarks of warren against RabbitMQ and Mosquitto (see bench/README.md)."""
