# One process per event. WebRTC media uses UDP ports picked per connection, so run with
# host networking (docker run --network host ...) and set --ice-host to the public address.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY web_client ./web_client
RUN pip install --no-cache-dir .
COPY config ./config

RUN useradd --system --home /app router
USER router
EXPOSE 8000/tcp
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2)"
CMD ["interp-router", "serve", "--config", "/app/config/event.toml", "--host", "0.0.0.0", "--port", "8000"]
