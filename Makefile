# Two commands for a fresh machine:  make run  (setup + serve)   make test  (setup + tests)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
# Reference images for similarity search, embedded once by `make run` when present.
GALLERY_DATA ?= ../shared/data/geological-similarity
# Known individuals for whale identification (train.csv + images/), embedded once by `make run`.
WHALES_DATA ?= ../shared/data/whales
export FLASK_APP := wsgi

.PHONY: setup setup-train setup-dev browser docker-engine image image-test run test test-fast lint bench bench-sections train-salt train-rocks train-whales pretrain-study clean
setup: $(VENV)/.installed
setup-train: $(VENV)/.installed-train
setup-dev: $(VENV)/.installed-dev

# The package installed in place (pyproject.toml): `import app` works from any folder and in Ray's
# worker processes, with no PYTHONPATH; the extras add training, Ray and the test tools.
$(VENV)/.installed: pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-train: $(VENV)/.installed requirements-train.txt
	$(PY) -m pip install --quiet -e ".[train]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-train requirements-ray.txt requirements-dev.txt
	$(PY) -m pip install --quiet -e ".[train,ray,dev]"
	touch $@

# Debian's Chromium for the Playwright browser tests (Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"

# A container engine for the image tests (Debian's docker.io, debootstrap and docker-compose, started
# here as root).
docker-engine:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && \
	  { command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null; } || \
	  echo "docker.io could not be installed: the image tests will be skipped"
	@deploy/image.sh engine || echo "no container engine: the image test will be skipped"

image: docker-engine  ## build the serving image geovision:latest (a debootstrap base, the local wheel index)
	deploy/image.sh build

image-test: setup-dev docker-engine  ## build the image, run it as an operator would (tests/test_image.py)
	$(PY) -m pytest -q -rs -s -m docker

run: setup   ## apply migrations, build missing galleries, then serve with gunicorn on 127.0.0.1:$(PORT)
	$(VENV)/bin/flask db upgrade
	@if [ ! -e instance/gallery/similarity ] && [ -d "$(GALLERY_DATA)" ]; then \
	  $(VENV)/bin/flask gallery build similarity --data "$(GALLERY_DATA)"; fi
	@if [ ! -e instance/gallery/whales ] && [ -f "$(WHALES_DATA)/train.csv" ] && [ -f models/whales/model.pt ]; then \
	  $(VENV)/bin/flask gallery build whales --data "$(WHALES_DATA)"; fi
	APP_CONFIG=$${APP_CONFIG:-development} PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: setup-dev browser docker-engine  ## run the test suite (PYTEST_ARGS="-m postgres" for a part of it)
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

test-fast: setup-dev  ## the everyday tier: no Chromium, servers, Ray, containers or real-data runs (-m "not slow")
	$(PY) -m pytest -q -rs -m "not slow" $(PYTEST_ARGS)

lint: setup-dev  ## ruff, and the import contracts of .importlinter (layers, no cycles)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: setup-dev  ## serving benchmark: raw vs served throughput, latency; writes docs/PERFORMANCE.md
	$(PY) bench/serving.py

bench-sections: setup  ## time whole salt sections of 0.1-2 megapixels (time per megapixel)
	$(PY) bench/sections.py

train-salt: setup-train  ## retrain the salt segmenter on ../shared/data (hours on CPU)
	$(VENV)/bin/flask train-model salt --data ../shared/data/tgs-salt --epochs 40 --lovasz-from 18

train-rocks: setup-train  ## retrain the rock classifier and embedding (about 20 min on CPU)
	$(VENV)/bin/flask train-model rocks --data ../shared/data/geological-similarity --epochs 15

train-whales: setup-train  ## retrain the released whale embedding recipe (about 30 min on 2 CPU cores)
	$(VENV)/bin/flask train-model whales --data ../shared/data/whales --threads 2   # the defaults: cached stages

pretrain-study: setup-train  ## self-supervised pretraining table (rotation/jigsaw vs scratch; about 1 h on 2 cores)
	$(PY) -m train.salt.ssl_study run --data ../shared/data/tgs-salt --threads 2
	$(PY) -m train.salt.ssl_study report

clean:
	rm -rf $(VENV) .pytest_cache
