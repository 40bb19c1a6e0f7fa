# The two commands of the README. Both install what they need first
# (.ci/setup is idempotent and fast when everything is already there).
.PHONY: setup run test kube-up kube-down
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

# A real Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, controller-manager,
# scheduler; built from Go modules and cached outside the clone by e2e/kube/build) and a
# node: NODE=agent (default) runs pods as local processes (e2e/harness/node_agent.py),
# NODE=real a real kubelet, containerd and kube-proxy with this checkout's images
# (e2e/harness/real_node.py; e2e/node/build).
# The last line printed is `export KUBECONFIG=...`: eval "$$(make -s kube-up | tail -1)".
# State and logs: $$PUSHCLUSTER_KUBE_STATE (default /tmp/pushcluster-kube).
NODE ?= agent
kube-up:
	@e2e/kube/build >/dev/null
	@if [ "$(NODE)" = real ]; then e2e/node/build >/dev/null; fi
	@cargo build -q -p push-server -p push-operator
	@cd e2e && python3 -m harness.kube up --node $(NODE)

# Stops exactly what kube-up started (by PID) and removes its state.
kube-down:
	@cd e2e && python3 -m harness.kube down
