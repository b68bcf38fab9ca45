"""eventrouter: the command line and the embedded Kafka broker that wire the packages together."""

__version__ = "0.1.0"
