# shellcheck shell=bash
# The rig's TLS material and secrets for the secured endpoints (GitHub issue #15), made with the
# openssl CLI the first time `dev/up` runs and kept under $DEV_DIR/tls (mode 700):
#   ca.pem, ca.key                 the rig CA (every secured endpoint's certificate chains to it)
#   server.pem, server.key         the servers' certificate: subjectAltName IP:127.0.0.1 ONLY, on
#                                  purpose no DNS:localhost, so a client that connects to
#                                  `localhost` sees a hostname mismatch (tests use that)
#   server-keystore.pem            server.key + server.pem in one file (Kafka's PEM keystore)
#   client.pem, client.key         a client certificate (CN=sluice) for mTLS
#   client-keystore.pem            client.key + client.pem in one file (Kafka CLI clients)
#   other-ca.pem, other-ca.key     a second, unrelated CA (for "unknown CA" tests)
#   secret/<name>                  random passwords/tokens, made once (mode 600)
#   env                            the SLUICE_DEV_TLS_* lines dev/lib.sh's write_env adds to .dev/env
# Keys are PEM, PKCS#8, unencrypted, RSA 2048 (every client and server of the rig takes them).
# Everything is made again when a file is missing, a certificate expires within 30 days or the
# server/client certificate does not chain to ca.pem; the secrets survive that (only a missing
# secret is made anew). Running services keep the material they loaded: after a regeneration,
# `dev/down && dev/up`.

# Used by the service scripts and dev/status.
# shellcheck disable=SC2034
{
TLS_DIR="$DEV_DIR/tls"
TLS_CA="$TLS_DIR/ca.pem"
TLS_OTHER_CA="$TLS_DIR/other-ca.pem"
TLS_SERVER_CERT="$TLS_DIR/server.pem"
TLS_SERVER_KEY="$TLS_DIR/server.key"
TLS_SERVER_KEYSTORE="$TLS_DIR/server-keystore.pem"
TLS_CLIENT_CERT="$TLS_DIR/client.pem"
TLS_CLIENT_KEY="$TLS_DIR/client.key"
TLS_CLIENT_KEYSTORE="$TLS_DIR/client-keystore.pem"
TLS_CA_DAYS=3650
TLS_LEAF_DAYS=825
TLS_RENEW_SECONDS=$((30 * 24 * 3600))
}

# tls_secret NAME : prints the secret NAME (32 hex characters), making it the first time.
tls_secret() {
  local f="$TLS_DIR/secret/$1"
  if [[ ! -s "$f" ]]; then
    mkdir -p "$TLS_DIR/secret"; chmod 700 "$TLS_DIR" "$TLS_DIR/secret"
    (umask 077 && openssl rand -hex 16 >"$f.tmp" && mv -f "$f.tmp" "$f")
  fi
  cat "$f"
}

# 0 when the material is complete, valid for 30 more days and the leaves chain to the rig CA.
_tls_ok() {
  local f
  for f in ca.key ca.pem server.key server.pem server-keystore.pem client.key client.pem \
    client-keystore.pem other-ca.key other-ca.pem; do
    [[ -s "$TLS_DIR/$f" ]] || return 1
  done
  for f in ca.pem server.pem client.pem other-ca.pem; do
    openssl x509 -noout -checkend "$TLS_RENEW_SECONDS" -in "$TLS_DIR/$f" >/dev/null 2>&1 || return 1
  done
  openssl verify -CAfile "$TLS_CA" "$TLS_SERVER_CERT" "$TLS_CLIENT_CERT" >/dev/null 2>&1
}

# _tls_key FILE : a new RSA key, PKCS#8 PEM ("BEGIN PRIVATE KEY"), mode 600.
_tls_key() { (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null); }

# _tls_ca NAME CN : a self-signed CA NAME.pem/NAME.key.
_tls_ca() {
  _tls_key "$TLS_DIR/$1.key"
  openssl req -x509 -new -key "$TLS_DIR/$1.key" -sha256 -days "$TLS_CA_DAYS" -subj "/O=sluice dev rig/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$TLS_DIR/$1.pem"
}

# _tls_leaf NAME CN EXTENSIONS : NAME.pem/NAME.key signed by the rig CA, plus NAME-keystore.pem.
_tls_leaf() {
  local name="$1" cn="$2" ext="$3"
  _tls_key "$TLS_DIR/$name.key"
  openssl req -new -key "$TLS_DIR/$name.key" -subj "/O=sluice dev rig/CN=$cn" |
    openssl x509 -req -CA "$TLS_CA" -CAkey "$TLS_DIR/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -sha256 -days "$TLS_LEAF_DAYS" -extfile <(printf '%s\n' "$ext") -out "$TLS_DIR/$name.pem" 2>/dev/null
  (umask 077 && cat "$TLS_DIR/$name.key" "$TLS_DIR/$name.pem" >"$TLS_DIR/$name-keystore.pem")
}

# tls_ensure : makes the material when it is missing or due (see above), and $TLS_DIR/env.
tls_ensure() {
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$TLS_DIR"; chmod 700 "$TLS_DIR"
  if ! _tls_ok; then
    log "tls: making the rig CA and certificates in $TLS_DIR"
    rm -f "$TLS_DIR"/*.pem "$TLS_DIR"/*.key "$TLS_DIR"/*.srl
    _tls_ca ca "sluice dev rig CA"
    _tls_ca other-ca "sluice dev rig OTHER CA (trusted by nothing)"
    local common="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer"
    _tls_leaf server "sluice dev rig server" "$common
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1"
    _tls_leaf client "sluice" "$common
extendedKeyUsage=clientAuth"
    chmod 644 "$TLS_CA" "$TLS_OTHER_CA" "$TLS_SERVER_CERT" "$TLS_CLIENT_CERT"
    _tls_ok || die "tls: the material just made in $TLS_DIR does not verify"
  fi
  cat >"$TLS_DIR/env" <<EOF
export SLUICE_DEV_TLS_CA_FILE=$TLS_CA
export SLUICE_DEV_TLS_OTHER_CA_FILE=$TLS_OTHER_CA
export SLUICE_DEV_TLS_CLIENT_CERT_FILE=$TLS_CLIENT_CERT
export SLUICE_DEV_TLS_CLIENT_KEY_FILE=$TLS_CLIENT_KEY
EOF
}

# 0 when the material is there (for services that only add secured endpoints when it is).
tls_ready() { [[ -s "$TLS_SERVER_KEYSTORE" && -s "$TLS_CA" ]]; }
