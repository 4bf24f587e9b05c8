# shellcheck shell=bash
# Builds the gocaves mock Couchbase cluster from its Go module source.
#
#   bash dev/couchbase/build.sh VERSION OUT_DIR STAMP
#
# `go install github.com/couchbaselabs/gocaves@VERSION` refuses the module (its go.mod has a
# `replace ... => ./client`), so: download the module into the module cache, copy it to a
# writable build dir, drop the client replace/require, generate its embedded files, and build.
#
# Two small source patches are applied to the copy (checked below, the build fails if they no
# longer apply):
#   * per-request tracing (every KV packet printed with its value as decimal bytes, every HTTP
#     request, every SASL step) only when GOCAVES_TRACE is set: an idle SDK client polls the
#     cluster config every 2.5 s and would otherwise grow the log by ~12 KB/s;
#   * listeners bind 127.0.0.1 instead of every interface (the cluster config advertises
#     127.0.0.1 anyway);
#   * the TLS listeners' certificate and key come from the PEM files named by GOCAVES_TLS_CERT
#     and GOCAVES_TLS_KEY when set (the start fails when they do not load), instead of the
#     hard-coded certificate (expired in 2018). TLS listeners (kvSSL, mgmtSSL, ... in nodesExt)
#     are on by default: every node feature is when a node's feature list is empty.
#
# Leaves OUT_DIR/gocaves and OUT_DIR/VERSION containing STAMP (written last, so an interrupted
# build is redone by the next install).
set -euo pipefail

version="${1:?version}"
out="${2:?out dir}"
stamp="${3:?stamp}"
module="github.com/couchbaselabs/gocaves"
client="$module/client"

mkdir -p "$out/src"
rm -f "$out/VERSION"
export GOFLAGS="-mod=mod -buildvcs=false"

info="$(cd "$out/src" && go mod download -json "$module@$version")" || {
  printf '%s\n' "$info" >&2
  echo "go mod download $module@$version failed" >&2
  exit 1
}
moddir="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"$info")"

src="$out/src/gocaves-$version"
rm -rf "$src"
cp -r "$moddir" "$src"
chmod -R u+w "$src"
cd "$src"

go mod edit -dropreplace "$client" -droprequire "$client"
# example/ imports the client module; it is not part of the binary.
rm -rf example

# --- patches -------------------------------------------------------------------------------
expect() { # expect FILE PATTERN COUNT
  local n; n="$(grep -c -- "$2" "$1" || true)"
  [[ "$n" == "$3" ]] || { echo "patch check failed: $1 has $n x '$2', want $3" >&2; exit 1; }
}

sed -i \
  -e 's/log\.Printf("received \(kv packet\|mgmt request\|view request\|query request\|search request\|analytics request\)/tracef("received \1/' \
  -e 's/log\.Printf("sending kv packet/tracef("sending kv packet/' \
  mock/mockimpl/cluster.go
expect mock/mockimpl/cluster.go 'tracef(' 7
sed -i 's/log\.Printf("AUTH STEP/tracef("AUTH STEP/' mock/mockimpl/svcimpls/kvimplauth.go
expect mock/mockimpl/svcimpls/kvimplauth.go 'tracef(' 1
for pkg in mockimpl:mock/mockimpl svcimpls:mock/mockimpl/svcimpls; do
  cat >"${pkg#*:}/zz_sluice_trace.go" <<EOF
package ${pkg%%:*}

import (
	"log"
	"os"
)

// Added by sluice dev/couchbase/build.sh: per-request tracing only with GOCAVES_TRACE set.
var sluiceTrace = os.Getenv("GOCAVES_TRACE") != ""

func tracef(format string, args ...interface{}) {
	if sluiceTrace {
		log.Printf(format, args...)
	}
}
EOF
done

for f in mock/mockimpl/servers/memdserver.go mock/mockimpl/servers/httpserver.go; do
  sed -i 's/fmt\.Sprintf(":%d", s\.listenPort)/fmt.Sprintf("127.0.0.1:%d", s.listenPort)/' "$f"
  expect "$f" '"127.0.0.1:%d", s.listenPort' 1
done

sed -i 's/cert, _ := tls\.X509KeyPair(certPem, keyPem)/cert := sluiceTLSCert(certPem, keyPem)/' mock/mockimpl/cluster.go
expect mock/mockimpl/cluster.go 'cert := sluiceTLSCert(certPem, keyPem)' 1
expect mock/mockimpl/cluster.go 'Certificates: \[\]tls.Certificate{cert}' 1
# TLS listeners need the node feature "tls", which an empty feature list (the default nodes') grants.
sed -n '/^func clusterFeatureListContains/,/^}/p' mock/mockimpl/utils.go >"$out/feature-check.go"
expect "$out/feature-check.go" 'if len(list) == 0 {' 1
rm -f "$out/feature-check.go"
cat >mock/mockimpl/zz_sluice_tls.go <<'EOF'
package mockimpl

import (
	"crypto/tls"
	"log"
	"os"
)

// Added by sluice dev/couchbase/build.sh: the TLS listeners' certificate from the PEM files named
// by GOCAVES_TLS_CERT and GOCAVES_TLS_KEY when set, else the built-in (expired) one.
func sluiceTLSCert(certPem, keyPem []byte) tls.Certificate {
	certFile, keyFile := os.Getenv("GOCAVES_TLS_CERT"), os.Getenv("GOCAVES_TLS_KEY")
	if certFile == "" && keyFile == "" {
		cert, _ := tls.X509KeyPair(certPem, keyPem)
		return cert
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		log.Fatalf("GOCAVES_TLS_CERT=%q GOCAVES_TLS_KEY=%q: %s", certFile, keyFile, err)
	}
	log.Printf("TLS certificate from %s", certFile)
	return cert
}
EOF

# --- generate + build ----------------------------------------------------------------------
go run ./tools/prebuildstep.go >/dev/null
go build -o "$out/gocaves.tmp" .
mv -f "$out/gocaves.tmp" "$out/gocaves"
printf '%s\n' "$stamp" >"$out/VERSION"
