#!/usr/bin/env bash
# Installs what the end-to-end tests need and a fresh machine lacks:
#
#   - redis-server and redis-cli (Debian package redis-server), only when missing;
#   - kcat (Debian package kcat, a librdkafka client: the end-to-end tests
#     feed and read the binary with it as an independent client), only when
#     missing;
#   - openssl, for certs.sh (the TLS stacks' certificates), only when missing;
#   - chromium (Debian package chromium): the web console's browser tests
#     (webui/browser_test.go) drive it headless, only when missing;
#   - checks that Java 17+ and Maven are on PATH (they are not installed here:
#     say what is missing and fail);
#   - fetches the Apache Kafka jars into the cache (see common.sh), only when
#     they are not there yet.
#
# Idempotent: when everything is present it only checks, in about a second.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

missing=()

# Java and Maven come with the machine image; a wrong version is a setup problem
# to report, not something to paper over.
if ! command -v java >/dev/null; then
	missing+=("java (Java 17 or newer: apt-get install -y openjdk-17-jre-headless)")
else
	major="$(java_major)"
	if [[ ! "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
		missing+=("Java 17 or newer (found '$major'; Kafka 4 needs 17+)")
	fi
fi
if ! command -v mvn >/dev/null; then
	missing+=("mvn (Maven 3.8+: apt-get install -y maven)")
fi

# Redis is installed from Debian when absent. We run as root in CI; elsewhere
# say what to run instead of failing inside apt-get.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing redis-server from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
	else
		missing+=("redis-server and redis-cli (as root: apt-get install -y redis-server)")
	fi
fi

# kcat, the same way: an independent Kafka client (librdkafka) for the
# end-to-end tests that drive the binary as a user would (e2e/hostile_test.go).
if ! command -v kcat >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing kcat from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends kcat >/dev/null
	else
		missing+=("kcat (as root: apt-get install -y kcat)")
	fi
fi

# chromium, the same way: a real browser for the web console's tests.
if ! command -v chromium >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing chromium from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
	else
		missing+=("chromium (as root: apt-get install -y chromium)")
	fi
fi

# openssl, the same way: certs.sh makes the TLS stacks' certificates with it.
if ! command -v openssl >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing openssl from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends openssl >/dev/null
	else
		missing+=("openssl (as root: apt-get install -y openssl)")
	fi
fi

if ((${#missing[@]} > 0)); then
	log "missing:"
	for m in "${missing[@]}"; do
		log "  - $m"
	done
	exit 1
fi

fetch_kafka_jars

log "ready: $(java -version 2>&1 | head -n1), $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g'), $(redis-server --version | cut -d' ' -f1-3), kcat $(kcat -V 2>&1 | sed -n 's/^kcat - .* version \([^ ]*\).*/\1/p' | head -n1), $(chromium --version 2>/dev/null | head -n1), Kafka $KAFKA_VERSION jars in $KAFKA_LIB_DIR"

# promtool and the Prometheus server (Debian package prometheus, 2.42 on
# Debian 12) for the checks of deploy/prometheus (deploy/deploytest) and the
# alerting end-to-end test (e2e/ops_test.go); only when missing. The
# package's own service is not started: a policy-rc.d denies it while the
# package installs, unless the machine already has one.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing prometheus (promtool and the server) from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		own_policy=""
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod +x /usr/sbin/policy-rc.d
			own_policy=1
		fi
		prom_status=0
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || prom_status=$?
		[[ -z "$own_policy" ]] || rm -f /usr/sbin/policy-rc.d
		((prom_status == 0)) || die "installing the prometheus package failed"
	else
		die "promtool and prometheus not found (as root: apt-get install -y --no-install-recommends prometheus)"
	fi
fi
log "$(promtool --version 2>&1 | head -n1)"
