# The two commands of the README. Both install what they need first
# (.ci/setup is idempotent and fast when everything is already there).
.PHONY: setup run test
CHART_EXAMPLE ?= examples/chat.yaml
# Extra flags of `push-operator local`, e.g. LOCAL_ARGS="--port 9000".
LOCAL_ARGS ?=

setup:
	.ci/setup

# A working push cluster on this machine (local mode: redis-server + nginx +
# push-server processes), printing `endpoint: <url>` to open in a browser.
run: setup
	cargo build --release -p push-server -p push-operator
	"$${CARGO_TARGET_DIR:-target}/release/push-operator" local -f $(CHART_EXAMPLE) $(LOCAL_ARGS)

# Everything CI runs.
test: setup
	.ci/test
