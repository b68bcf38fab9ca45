FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventrouter ./eventrouter
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY forwarders ./forwarders
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
CMD ["eventrouter", "--help"]
