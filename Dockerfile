# One process per event. WebRTC media uses UDP ports picked per connection, so run with
# host networking (docker run --network host ...) and set --ice-host to the public address.

# The wheel is built with a C compiler (router/media/_rtp_burst.c, the listeners' send loop);
# the runtime image does not need one.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY router ./router
COPY web_client ./web_client
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m zipfile -l /wheels/interp_router-*.whl | grep -q '_rtp_burst.*\.so'

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config ./config

RUN useradd --system --home /app router
USER router
EXPOSE 8000/tcp
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2)"
CMD ["interp-router", "serve", "--config", "/app/config/event.toml", "--host", "0.0.0.0", "--port", "8000"]
