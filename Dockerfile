# GeoVision serving image.
#   GPU instance (default base, CUDA runtime):  docker build -t geovision .
#   any Debian/Ubuntu base without CUDA:        docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t geovision .
#   make image builds it here (a Debian base made with debootstrap, the local wheel index; deploy/image.sh)
# Run: docker run --gpus all -p 8000:8000 -v geovision-instance:/app/instance -e SECRET_KEY=... geovision
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# --- build stage: a virtual environment with the serving packages (compilers and pip caches stay here)
FROM ${BASE_IMAGE} AS build
ARG WITH_RAY=0
ARG PIP_EXTRA_INDEX_URL=
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-ray.txt /tmp/requirements/
# deploy/build-ca/ holds nothing, or (make image) the CA bundle the package index needs: it is used
# by this stage only and never reaches the final image.
COPY deploy/build-ca/ /tmp/build-ca/
RUN if [ -f /tmp/build-ca/ca-certificates.crt ]; then export PIP_CERT=/tmp/build-ca/ca-certificates.crt; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/requirements/requirements.txt \
 && if [ "$WITH_RAY" = 1 ]; then /opt/venv/bin/pip install -r /tmp/requirements/requirements-ray.txt; fi \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# --- serving stage: the base, Python, the environment and the application; no pip cache, no compilers
FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG VCS_REF=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="geovision" \
      org.opencontainers.image.description="Salt segmentation, rock classification, image similarity and whale identification behind Flask" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    APP_CONFIG=production HOST=0.0.0.0 PORT=8000 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml wsgi.py gunicorn.conf.py docker-entrypoint.sh ./
COPY geovision geovision
COPY app app
COPY models models
COPY migrations migrations
COPY templates templates
COPY static static
RUN mkdir -p /app/instance && chown app:app /app/instance
USER app
VOLUME /app/instance
EXPOSE 8000
# healthy once every model is loaded and warm (python's urllib: no curl in the image)
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/ready' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["./docker-entrypoint.sh"]
