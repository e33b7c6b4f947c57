.PHONY: demo test setup-serve setup-test bench

demo: setup-serve
	.venv/bin/samstream demo

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q tests

bench: setup-test
	.venv/bin/samstream bench --kernels

setup-serve:
	@bash scripts/setup.sh serve

setup-test:
	@bash scripts/setup.sh test
