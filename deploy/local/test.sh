#!/usr/bin/env bash
# What `make test` runs: go vet, then every test with the race detector
# against a real Kafka and Redis.
#
#   test.sh                          vet and test ./...
#   test.sh ./internal/...           vet and test only these packages
#   test.sh -run TestHarness -v      flags go to `go test`; packages default to ./...
#   test.sh -run Foo ./pipeline/...  both
#
# Arguments are passed to `go test` as given. Those that start with ./ or ../
# or with the module path are the packages; when there are none, ./... is
# added. `go vet` checks the same packages.
#
# The services: when IDSYNC_TEST_KAFKA and IDSYNC_TEST_REDIS are set, the tests
# use those. Otherwise this script installs what is missing (install.sh),
# starts the missing service(s) with start.sh, points the variables at them,
# and stops them with stop.sh when it exits, whether the tests pass or fail.
# It exits with `go test`'s status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

module="$(go list -m)"
args=("$@")
pkgs=()
for a in "${args[@]}"; do
	case "$a" in
	./* | ../* | . | "$module" | "$module"/*) pkgs+=("$a") ;;
	esac
done
if ((${#pkgs[@]} == 0)); then
	pkgs=(./...)
	args+=(./...)
fi

# Vet first: it needs no services and fails fast.
log "go vet ${pkgs[*]}"
go vet "${pkgs[@]}"

# Start what the environment does not already provide.
services=()
[[ -n "${IDSYNC_TEST_KAFKA:-}" ]] || services+=(kafka)
[[ -n "${IDSYNC_TEST_REDIS:-}" ]] || services+=(redis)

stop_started() {
	local s
	for s in "${services[@]}"; do
		bash "$LOCAL_DIR/stop.sh" "$s" || log "stopping $s failed"
	done
}

if ((${#services[@]} > 0)); then
	bash "$LOCAL_DIR/install.sh"
	# Set before starting, so that a start that fails half-way is cleaned up too.
	trap stop_started EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for s in "${services[@]}"; do
		bash "$LOCAL_DIR/start.sh" "$s"
	done
	[[ -n "${IDSYNC_TEST_KAFKA:-}" ]] || export IDSYNC_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
	[[ -n "${IDSYNC_TEST_REDIS:-}" ]] || export IDSYNC_TEST_REDIS="127.0.0.1:$REDIS_PORT"
fi
log "testing against IDSYNC_TEST_KAFKA=$IDSYNC_TEST_KAFKA IDSYNC_TEST_REDIS=$IDSYNC_TEST_REDIS"

status=0
go test -race -count=1 -timeout 30m "${args[@]}" || status=$?
exit "$status"
