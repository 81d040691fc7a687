# Two commands do everything on a fresh Debian/Ubuntu machine:
#   make run    install what is missing, then serve on 127.0.0.1:8000 (embedded PostgreSQL + Redis in ./var)
#   make test   the same set-up, then the whole test suite
#   make test-fast  the suite without transcodes of seconds, browsers, fault processes and the load run
#   make lint   ruff (lint, format check) and mypy --strict over videoflix/
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Debian packages the server and its tests need (binaries checked first).
APT_PACKAGES := ffmpeg redis-server postgresql nodejs npm
# The browser tests drive the distribution's Chromium (never a downloaded build).
CHROMIUM := /usr/bin/chromium
# npm ci writes this file last: newer than the lock file means node_modules/ matches it.
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test test-fast lint setup system-deps test-deps nginx-dep apt-install bench clean

run: setup
	$(VENV)/bin/videoflix dev

# Most of a test's time is spent waiting on ffmpeg, servers, browsers, leases and real-time
# playback: three pytest processes (pytest-xdist) keep two cores busy where two left them
# idle half the time (the suite used 0.9 of 2 cores). Each has its own PostgreSQL, Redis
# and SMTP (session fixtures); whole files go to one process (module fixtures start once),
# longest first (tests/conftest.py). TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 3
PYTEST := $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The 25 slowest tests are listed at the end: where the next minute of the run goes.
test: setup test-deps
	$(PYTEST) --durations=25

# The loop while editing: everything but the markers below (setup.cfg), still on real
# PostgreSQL, Redis, SMTP, ffmpeg and nginx; `make test` before pushing runs them all.
FAST_MARKERS := not slow and not browser and not faults and not load
test-fast: setup nginx-dep
	$(PYTEST) -m "$(FAST_MARKERS)"

# The house rules a machine can check (pyproject.toml): ruff's lint and format, then
# mypy --strict, over videoflix/. CI runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check videoflix
	$(VENV)/bin/ruff format --check videoflix
	$(VENV)/bin/mypy

setup: system-deps $(STAMP) $(NODE_STAMP)

system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	$(MAKE) --no-print-directory apt-install PACKAGES="$$missing"

# Only for the tests (`make run` needs none of them): the distribution's Chromium for
# `make test`'s browser tests, nginx, which tests/test_deploy.py runs in front of the app,
# and systemd's systemd-analyze, which tests/test_systemd_units.py verifies deploy/*.service
# with (a container image of Debian has no systemd). `make test-fast` needs only the last
# two. One apt-get run for whatever is missing.
# The shipped site checks media tokens with njs: Debian's libnginx-mod-http-js.
HAS_NGINX := (command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]) && [ -f /usr/lib/nginx/modules/ngx_http_js_module.so ]
HAS_SYSTEMD_ANALYZE := command -v systemd-analyze >/dev/null 2>&1
test-deps:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="chromium"; \
	$(HAS_NGINX) || missing="$$missing nginx libnginx-mod-http-js"; \
	$(HAS_SYSTEMD_ANALYZE) || missing="$$missing systemd"; \
	$(MAKE) --no-print-directory apt-install PACKAGES="$$missing"

nginx-dep:
	@missing=""; \
	$(HAS_NGINX) || missing="nginx libnginx-mod-http-js"; \
	$(HAS_SYSTEMD_ANALYZE) || missing="$$missing systemd"; \
	$(MAKE) --no-print-directory apt-install PACKAGES="$$missing"

# apt-get install $(PACKAGES) (nothing when empty), as root or through password-less sudo.
apt-install:
	@missing="$(strip $(PACKAGES))"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "Please install these packages first (as root): $$missing"; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "No apt-get here: please install $$missing with your package manager"; exit 1; fi; \
	echo "Installing: $$missing"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | system-deps $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

# hls.js and any other browser library: exactly the versions in package-lock.json.
$(NODE_STAMP): package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund --loglevel=error

bench: setup
	$(VENV)/bin/python bench/transcode.py

clean:
	rm -rf $(VENV) build *.egg-info node_modules
