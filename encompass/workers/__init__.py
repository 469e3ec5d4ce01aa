"""The workers: the consumers and the dispatcher loop, each started from a Container."""
