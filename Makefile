.PHONY: demo test setup-serve setup-test bench report

demo: setup-serve
	.venv/bin/samstream demo

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q tests

bench: setup-test
	.venv/bin/samstream bench --kernels

# The separation report with the judge's correlation, from nothing: corpus (about 11 min
# the first time), then `samstream bench` on its validation set.
report: setup-test
	@test -f data/corpus/validation/index.jsonl || .venv/bin/samstream data build
	.venv/bin/samstream bench

setup-serve:
	@bash scripts/setup.sh serve

setup-test:
	@bash scripts/setup.sh test
