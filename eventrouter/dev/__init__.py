"""What runs eventrouter on one machine for development, the demo, the tests and the benchmarks, and is
never imported by the pipeline itself (tests/test_quality.py checks it):

- `localkafka/`: the embedded Apache Kafka broker (jars from Maven Central, started on 127.0.0.1);
- `standins/`: local HTTP servers standing in for each vendor, one module per destination kind;
- `native.py`: the build of the compiled hot path (`python -m eventrouter.dev.native`);
- `assets.py`: the console's vendored htmx and CodeMirror, refreshed from npm (`python -m eventrouter.dev.assets`).
"""
