# ouvir: two entry points. `make demo` runs the main job, `make test` runs the test suite.
# Both create a virtual environment, install the system packages they need (apt, when root) and the
# project (non-editable, so missing package data fails), then run.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
APT_PKGS := pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 portaudio19-dev libsndfile1 \
            espeak-ng sox zsh flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
            fortunes wordnet-base bible-kjv wamerican chromium
STAMP := $(VENV)/.ouvir-installed

.PHONY: test demo system venv lint clean

test: venv
	$(PY) -m pytest -q

# The default model's bundled samples through the real-time loop (ONNX fp32), live captions, then the WER.
demo: venv
	$(VENV)/bin/ouvir demo

lint: venv
	$(VENV)/bin/ruff check .

# System packages: PortAudio + PulseAudio for the (virtual) microphone, libsndfile, espeak-ng/sox for test speech,
# the training recipe's synthesizers (flite, festival + voices) and text sources (fortunes, WordNet, KJV, words),
# zsh for the completion test, chromium (headless) for the browser caption client's test.
system:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "apt: installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing system packages (run as root or install): $$missing"; exit 1; fi; \
	fi

venv: system $(STAMP)

# torch first (the local CPU wheel), then executorch (declares no torch requirement), then the project.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.13.0"
	$(PIP) install "executorch==1.5.1"
	$(PIP) install ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
