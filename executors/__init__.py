"""Job schemas and the executors that run them."""
