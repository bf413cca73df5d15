# Two commands for a fresh machine:  make run  (setup + serve)   make test  (setup + tests)
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
export FLASK_APP := wsgi

.PHONY: setup run test train-salt clean
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: setup   ## apply migrations, then serve with gunicorn on 127.0.0.1:$(PORT)
	$(VENV)/bin/flask db upgrade
	PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: setup  ## run the test suite
	$(PY) -m pytest -q -rs

train-salt: setup  ## retrain the salt segmenter on ../shared/data (hours on CPU)
	$(VENV)/bin/flask train-model salt --data ../shared/data/tgs-salt --epochs 50 --lovasz-from 22

clean:
	rm -rf $(VENV) .pytest_cache
