# Videoflix: one process serving the API and HLS, with the transcode consumer.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 videoflix
WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY videoflix ./videoflix
COPY sql ./sql
COPY static ./static
RUN pip install --no-cache-dir .

USER videoflix
ENV VIDEOFLIX_HOST=0.0.0.0 \
    VIDEOFLIX_PORT=8000 \
    VIDEOFLIX_VAR_DIR=/data \
    VIDEOFLIX_MEDIA_DIR=/data/media
VOLUME ["/data"]
EXPOSE 8000
CMD ["videoflix", "serve"]
