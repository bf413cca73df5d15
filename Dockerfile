# GPU serving image: docker run --gpus all -p 8000:8000 -v geovision-instance:/app/instance IMAGE
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    APP_CONFIG=production HOST=0.0.0.0 PORT=8000 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv curl \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Serving packages only; WITH_RAY=1 adds Ray Serve (INFERENCE_BACKEND=ray, deploy/docker-compose.yml)
ARG WITH_RAY=0
COPY requirements.txt requirements-ray.txt /tmp/
RUN pip install -r /tmp/requirements.txt \
 && if [ "$WITH_RAY" = 1 ]; then pip install -r /tmp/requirements-ray.txt; fi

RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY geovision geovision
COPY app app
COPY models models
COPY migrations migrations
COPY templates templates
COPY static static
COPY wsgi.py gunicorn.conf.py docker-entrypoint.sh ./
RUN mkdir -p /app/instance && chown app:app /app/instance
USER app
VOLUME /app/instance
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/api/v1/ready" || exit 1
ENTRYPOINT ["./docker-entrypoint.sh"]
