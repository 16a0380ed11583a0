# clusterkeys: `make run` starts the service on its embedded defaults,
# `make test` runs lint, the unit tests and the end-to-end tests (what CI runs).
SHELL := /bin/bash
GO ?= go
BIN := bin
# The deployable functions and those of them that need cgo, from the table in
# pkg/functions (evaluated only by the targets that use them; the lister runs
# on the host whatever GOOS/GOARCH the environment sets).
LIST_FUNCTIONS = GOOS= GOARCH= $(GO) run ./pkg/functions/cmd/list
FUNCTIONS = $(shell $(LIST_FUNCTIONS))
CGO_FUNCTIONS = $(shell $(LIST_FUNCTIONS) -cgo)
GOFILES = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')

.PHONY: run test lint unit e2e e2e-postgres bench build lambda package deps kube-apiserver fuzz clean

## run: serve every function on 127.0.0.1:8080 with software keys and SQLite in ./.clusterkeys
run:
	$(GO) run ./localrun serve

## test: everything CI checks. deps comes before unit: some unit tests use
## SoftHSM2, openssl and python3-magnumclient, and with CI=true a missing one
## fails them, so a fresh machine must have them installed first.
test: lint deps unit e2e

## lint: gofmt, go mod tidy -diff and go vet on both modules (the main one also
## as the bootstraps are built, LAMBDA_TAGS: metrics compiled out), staticcheck on the main one
lint:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) vet -tags '$(LAMBDA_TAGS)' ./...
	$(GO) tool staticcheck ./...
	cd test && $(GO) mod tidy -diff && $(GO) vet ./...

## unit: the fast tests of the main module (seconds)
unit:
	$(GO) test -count=1 ./...

## build: localrun and the KMS shim into bin/
build:
	$(GO) build -o $(BIN)/localrun ./localrun
	$(GO) build -o $(BIN)/kmsshim ./functions/kmsshim

## LAMBDA_BACKENDS: the store and custody backends the bootstraps link, as
## build tags without their "clusterkeys." prefix (pkg/backends/all). The
## default is what the SAM deployment uses: PostgreSQL (a sandbox keeps no
## SQLite file) and software custody. A deployment with Keys=barbican or
## Keys=pkcs11 builds with keys.barbican or keys.pkcs11 (cgo) instead, e.g.
## make package LAMBDA_BACKENDS='store.postgres keys.pkcs11'. Empty links
## every backend, as `localrun serve --exec` on SQLite and make e2e need.
LAMBDA_BACKENDS ?= store.postgres keys.software
## LAMBDA_TAGS: lambda.norpc, clusterkeys.metrics.none (the bootstraps count
## nothing and link no Prometheus client: nothing scrapes a Lambda sandbox,
## and the client's init and size cost every cold start; see pkg/metrics)
## and the backends' tags
LAMBDA_TAGS = lambda.norpc clusterkeys.metrics.none $(addprefix clusterkeys.,$(LAMBDA_BACKENDS))
# Whether the bootstraps link pkcs11 custody (crypto11, cgo): when it is
# chosen, or when no custody is (then all are linked).
LAMBDA_PKCS11 = $(if $(filter keys.%,$(LAMBDA_BACKENDS)),$(filter keys.pkcs11,$(LAMBDA_BACKENDS)),all)

## lambda: each function as a Lambda `bootstrap` (provided.al2023, -tags LAMBDA_TAGS:
## lambda.norpc, clusterkeys.metrics.none and the tags of LAMBDA_BACKENDS), static (CGO_ENABLED=0) as make package
## builds it unless it links pkcs11 custody
lambda:
	@for f in $(FUNCTIONS); do \
	  echo "build $(BIN)/lambda/$$f/bootstrap (-tags '$(LAMBDA_TAGS)')"; \
	  $(if $(LAMBDA_PKCS11),,CGO_ENABLED=0) $(GO) build -tags '$(LAMBDA_TAGS)' -trimpath -ldflags='-s -w' -o $(BIN)/lambda/$$f/bootstrap ./functions/$$f || exit 1; \
	done

## package: one Lambda zip per function, $(PACKAGE_DIR)/<function>.zip with an
## executable bootstrap at its root, for GOARCH=$(ARCH) (amd64 or arm64).
## Reproducible: the same sources and Go toolchain give the same zip bytes,
## whatever the checkout's path. A function that links crypto11 (pkcs11
## custody) needs cgo and a C compiler for ARCH (CC_arm64, CC_amd64); the
## others are built with CGO_ENABLED=0. Which can link it is the Cgo column of
## pkg/functions (its tests check it against what each function links); they
## do when LAMBDA_BACKENDS links pkcs11 (not by default).
ARCH ?= $(shell $(GO) env GOARCH)
PACKAGE_DIR ?= $(BIN)/package
PACKAGE_FUNCTIONS ?= $(FUNCTIONS)
CC_amd64 ?= x86_64-linux-gnu-gcc
CC_arm64 ?= aarch64-linux-gnu-gcc
package:
	@case "$(ARCH)" in amd64|arm64) ;; *) echo "ARCH=$(ARCH): want amd64 or arm64"; exit 2;; esac
	@for f in $(PACKAGE_FUNCTIONS); do \
	  case " $(if $(LAMBDA_PKCS11),$(CGO_FUNCTIONS)) " in *" $$f "*) cgo=1;; *) cgo=0;; esac; \
	  echo "build $(PACKAGE_DIR)/$$f/bootstrap (GOARCH=$(ARCH) CGO_ENABLED=$$cgo -tags '$(LAMBDA_TAGS)')"; \
	  GOOS=linux GOARCH=$(ARCH) CGO_ENABLED=$$cgo CC=$(CC_$(ARCH)) GOFLAGS= \
	    $(GO) build -tags '$(LAMBDA_TAGS)' -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
	    -o $(PACKAGE_DIR)/$$f/bootstrap ./functions/$$f || exit 1; \
	  $(GO) run ./infra/sam/lambdazip -o $(PACKAGE_DIR)/$$f.zip $(PACKAGE_DIR)/$$f/bootstrap || exit 1; \
	done

## deps: install the real components the end-to-end tests use (Debian packages)
deps:
	bash test/scripts/deps.sh
	bash test/kube/install-etcd.sh
	bash test/scripts/barbican.sh install
	bash test/scripts/keystone.sh install

## kube-apiserver: build it once from the Go module proxy into ~/.cache/clusterkeys (10-30 min; cached by version)
kube-apiserver:
	BUILD_PARALLELISM=$${BUILD_PARALLELISM:-2} bash test/kube/build-kube-apiserver.sh

## e2e: end-to-end tests against real components (test/ module). Their
## bootstraps link every backend: `localrun serve --exec` runs them on SQLite.
e2e e2e-postgres: LAMBDA_BACKENDS =
e2e: deps build lambda kube-apiserver
	cd test && CLUSTERKEYS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 40m ./...
	$(MAKE) e2e-postgres

## e2e-postgres: the HTTP e2e suite again, every server on a private PostgreSQL instead of
## SQLite (the Keystone tests exercise authentication, not the store, and are left to the
## SQLite run: each Keystone set-up costs minutes)
e2e-postgres: build lambda
	cd test && CLUSTERKEYS_E2E_STORE=postgres CLUSTERKEYS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 40m -skip 'Keystone|Openrc' ./e2e/

## bench: in-process benchmarks, load through a running localrun, then the
## side-by-side comparisons written to BENCHMARKS.md: sign/validate beside
## cfssl v1.6.5 (built once into ~/.cache/clusterkeys, ~9 min the first
## time), the KMS shim beside a minimal KMS v2 plugin, each Lambda
## bootstrap's cold start beside a hello-world bootstrap, and sign/audit
## pages as the registry grows to 1M certificates
bench: build lambda
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/...
	cd test && CLUSTERKEYS_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 5s -count 1 ./...
	bash test/bench/cfssl.sh >/dev/null
	cd test && CLUSTERKEYS_BIN=$(CURDIR)/$(BIN) CLUSTERKEYS_PEER_BENCH=1 CLUSTERKEYS_BENCHMARKS_MD=$(CURDIR)/BENCHMARKS.md \
	  $(GO) test -count=1 -timeout 60m -run '^(TestVersusCfssl|TestVersusKMSPlugin|TestColdStart|TestRegistryGrowth)$$' -v ./bench/

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./pkg/...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
