# Videoflix: `videoflix serve` (API, HLS and the transcode consumer) or `videoflix worker`.
# Stages: build (a virtualenv with the dependencies) -> runtime (python slim + the
# distribution's ffmpeg + that virtualenv; no compilers, no pip cache, non-root).

# Browser libraries for the built-in pages (hls.js, tus-js-client), exactly as package-lock.json pins them.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY videoflix ./videoflix
# Editable: the package stays at /app/videoflix, next to sql/ and static/, which it
# finds relative to itself (migrate.py); the runtime stage has the same layout.
RUN /opt/venv/bin/pip install -e .

FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 videoflix \
 && mkdir -p /data/media \
 && chown -R videoflix:videoflix /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /app ./
COPY sql ./sql
COPY static ./static
COPY --from=web /web/node_modules ./node_modules

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VIDEOFLIX_HOST=0.0.0.0 \
    VIDEOFLIX_PORT=8000 \
    VIDEOFLIX_VAR_DIR=/data \
    VIDEOFLIX_MEDIA_DIR=/data/media
USER videoflix
VOLUME ["/data"]
EXPOSE 8000
# Python, not curl: the slim image has no HTTP client. `videoflix worker` has no
# HTTP; compose turns this check off for it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health/' % os.environ.get('VIDEOFLIX_PORT', '8000'), timeout=4)"]
CMD ["videoflix", "serve"]
