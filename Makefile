# bc_robot: `make demo` and `make test` are the two commands a new user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.bc_robot-env
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED = 1

.PHONY: env demo test bench clean-env

env: $(ENV_STAMP)

$(ENV_STAMP): requirements/constraints.txt setup.py scripts/make_env.sh
	bash scripts/make_env.sh $(VENV)
	@touch $(ENV_STAMP)

demo: env
	$(VENV)/bin/bc-robot demo

test: env
	$(PY) -m pytest test

clean-env:
	rm -rf $(VENV)
