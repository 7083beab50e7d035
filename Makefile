# Targets: build, k8s-bins, generate, verify, test, demo, sandbox, deps, clean. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
OUT := $(CURDIR)/_output
BIN := $(OUT)/bin
K8S_BIN := $(OUT)/k8s
# Tests that need real API servers find the binaries here (controller-runtime envtest).
export KUBEBUILDER_ASSETS ?= $(K8S_BIN)

CONTROLLER_GEN := $(GO) tool -modfile=hack/tools/go.mod controller-gen
TEST_FLAGS ?= -timeout 45m
GENERATED := crds/v1/zz_generated.deepcopy.go crds/bases

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the missing Debian packages the tests and the sandbox need (apt)
	@hack/deps.sh

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/submariner-go/submariner/agents/component.Version=$(VERSION)

.PHONY: build
build: ## Build every binary into _output/bin
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/coredns ./coredns-build

.PHONY: k8s-bins
k8s-bins: ## Build etcd and the Kubernetes binaries into _output/k8s (skipped when current)
	@hack/k8s-bins.sh $(K8S_BIN)

.PHONY: generate
generate: ## Regenerate deepcopy code and CRD YAML with controller-gen
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt crd:crdVersions=v1 \
		paths=./crds/v1/... output:crd:artifacts:config=crds/bases

.PHONY: verify
verify: ## gofmt, go vet, go.mod tidiness, generated files current, import rules
	@bad=$$(gofmt -l $$(find . -name '*.go' -not -path './_output/*')); \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd hack/tools && $(GO) mod tidy -diff
	cd e2e/tools/k8s && $(GO) mod tidy -diff
	cd e2e/tools/k8s/etcd && $(GO) mod tidy -diff
	@before=$$(find $(GENERATED) -type f | sort | xargs sha256sum); \
	$(MAKE) --no-print-directory generate >/dev/null; \
	after=$$(find $(GENERATED) -type f | sort | xargs sha256sum); \
	if [ "$$before" != "$$after" ]; then echo "generated files were stale and are now regenerated: review and commit them"; exit 1; fi
	$(GO) test -count=1 -run TestImportRules .

.PHONY: test
test: deps build k8s-bins ## Run every test tier (unit, integration, privileged, e2e)
	$(GO) test $(TEST_FLAGS) ./...

SANDBOX_FLAGS ?=

.PHONY: sandbox
sandbox: deps build k8s-bins ## Bring up a broker and two clusters on this machine (root); prints the kubeconfigs
	$(BIN)/sandbox up $(SANDBOX_FLAGS)

.PHONY: bench
bench: deps build k8s-bins ## Run the benchmarks, each against its reference in the same run (BENCH=regexp picks some)
	hack/bench.sh

.PHONY: demo
demo: deps build k8s-bins ## The main job: sandbox, broker, two clusters joined, a Service exported, resolved and reached (CABLE_DRIVER=, GLOBALNET=1)
	hack/demo.sh

.PHONY: sandbox-down
sandbox-down: ## Take the sandbox down and remove everything it made (safe twice, and after a crash)
	@if [ -x $(BIN)/sandbox ]; then $(BIN)/sandbox down; else $(GO) run ./cmd/sandbox down; fi

.PHONY: clean
clean: ## Remove build output (keeps the Kubernetes binaries; see clean-all)
	rm -rf $(BIN)

.PHONY: clean-all
clean-all: clean ## Remove all build output, including the Kubernetes binaries
	rm -rf $(OUT)
