# The two commands of the README. Both install what they need on first use (cargo-lambda,
# dynalite, and for `make test` the pinned Python tools in .venv) and are safe to re-run.
.PHONY: dev test

# The bridge on http://127.0.0.1:9000 with a local DynamoDB (dynalite); Ctrl-C stops it.
dev:
	bash infra/scripts/dev.sh

# Formatting, clippy, every test (with its own dynalite), rules sample, cfn-lint, sam validate.
test:
	bash infra/scripts/test.sh

# Speed, measured against a bare lambda_http baseline in the same run (see infra/bench). Not part of
# `make test`: the release build with fat LTO takes minutes. Two builds so the bench's own
# dependencies do not change the function binaries being measured.
.PHONY: bench
bench:
	cargo build --release -p submit -p callback -p query -p withdraw -p admin -p dispatch
	cargo build --release -p bridge-bench
	$${CARGO_TARGET_DIR:-target}/release/bridge-bench $(BENCH_ARGS)
