"""What every long-running process shares, below the contract: Kafka client settings and admin calls
(`kafka.py`), the one-line broker state reports (`kafka_watch.py`), config revisions on the config topic
(`revisions.py`), the crash guard that quarantines a record a process dies on (`quarantine.py`), GC tuning
(`process.py`) and batched Prometheus histograms (`histogram.py`)."""
