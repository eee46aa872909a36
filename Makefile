# pcm_l2l_ros — one command to set up and run the demo, one to run the tests.
#   make demo   creates .venv, installs pinned requirements, builds the interfaces, runs the demo
#   make test   same set-up if needed, then the test suite
#   make lint   ruff (rules, formatting of the listed files) and mypy with its baseline; CI runs it before the tests
# Every ROS process started from here runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (tools/env.sh).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP_REQ := $(VENV)/.requirements.stamp
STAMP_BUILD := install/.build.stamp
INTERFACES := $(wildcard pcm_l2l_interfaces/msg/*.msg pcm_l2l_interfaces/srv/*.srv pcm_l2l_interfaces/action/*.action) \
              pcm_l2l_interfaces/CMakeLists.txt pcm_l2l_interfaces/package.xml
PKG_FILES := package.xml setup.py setup.cfg $(wildcard launch/*.py config/*.yaml urdf/*.urdf)
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean distclean

setup: $(STAMP_BUILD)

$(STAMP_REQ): requirements.txt
	@start=$$(date +%s); \
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); \
	$(VENV)/bin/pip install -q --disable-pip-version-check -U pip 2>&1 | grep -v 'is ignored' || true; \
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v 'is ignored'; \
	test $${PIPESTATUS[0]} -eq 0 && \
	tools/fix_wheel_cmake.sh $(VENV)/bin/python && \
	touch $@ && echo "setup: requirements installed in $$(( $$(date +%s) - start )) s"

$(STAMP_BUILD): $(STAMP_REQ) $(INTERFACES) $(PKG_FILES)
	@start=$$(date +%s); \
	source $(VENV)/bin/activate && export AMENT_PREFIX_PATH=$$VIRTUAL_ENV CMAKE_PREFIX_PATH=$$VIRTUAL_ENV && \
	colcon --log-base log build --base-paths . pcm_l2l_interfaces --symlink-install \
	  --event-handlers console_cohesion- summary+ 2> >(grep -v -E "local_setup|byte-compiling" >&2) && \
	mkdir -p install && touch $@ && echo "setup: colcon build in $$(( $$(date +%s) - start )) s"

demo: setup
	tools/env.sh pcm-l2l demo $(DEMO_ARGS)

test: setup
	tools/env.sh python -m pytest $(PYTEST_ARGS)

# lint: ruff's rules on every file, ruff's formatting on the files listed in tools/format_checked.txt, and mypy on
# the core packages against tools/mypy_baseline.txt (no new type errors; the baseline only shrinks)
lint: setup
	tools/env.sh ruff check .
	tools/env.sh ruff format --check $$(grep -v '^#' tools/format_checked.txt | while read -r f; do test -f "$$f" && echo "$$f"; done)
	tools/env.sh python tools/typecheck.py

bench: setup
	tools/env.sh python bench/run_all.py

clean:
	rm -rf build install log

distclean: clean
	rm -rf $(VENV)
