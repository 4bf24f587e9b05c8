# shellcheck shell=bash
# registry_tls: the schema registry's secured endpoint (issue #15). Apicurio 3.x authenticates only
# through OIDC (Keycloak), so nginx (Debian's package, run by us with our own config under
# $DEV_DIR/registry_tls, never the system service) sits in front of the plain registry (registry.sh):
# TLS with the rig's certificate (dev/tls/tls.sh), then either HTTP basic auth (user `sluice`, the
# rig's random password, secret registry) or `Authorization: Bearer <token>` (secret
# registry-token), then proxied to http://127.0.0.1:$SLUICE_DEV_REGISTRY_PORT, every path
# (/apis/ccompat/v7 included). Anything else gets 401.
#   SLUICE_DEV_REGISTRY_HTTPS_PORT (18443)

REGISTRY_TLS_HOME="$DEV_DIR/registry_tls"
REGISTRY_TLS_CONF="$REGISTRY_TLS_HOME/nginx.conf"
REGISTRY_TLS_USER=sluice
REGISTRY_TLS_NGINX=/usr/sbin/nginx

registry_tls_port() { port_of SLUICE_DEV_REGISTRY_HTTPS_PORT 18443; }
_registry_tls_url() { echo "https://127.0.0.1:$(registry_tls_port)/apis/ccompat/v7"; }

registry_tls_install() {
  # On a host with an init system the package's postinst starts the system nginx on port 80;
  # containers block that (policy-rc.d / no init), and we never use it.
  [[ -x $REGISTRY_TLS_NGINX ]] || apt_install nginx
  command -v curl >/dev/null || apt_install curl
  [[ -x $REGISTRY_TLS_NGINX ]] || die "registry_tls: $REGISTRY_TLS_NGINX missing after installing nginx"
}

registry_tls_start() {
  local port upstream pw token user=""
  port="$(registry_tls_port)"; upstream="$(port_of SLUICE_DEV_REGISTRY_PORT 18081)"
  ! (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "registry_tls: 127.0.0.1:$port is already in use"
  tls_ready || die "registry_tls: no TLS material in $TLS_DIR (dev/up makes it)"
  pw="$(tls_secret registry)"; token="$(tls_secret registry-token)"
  mkdir -p "$REGISTRY_TLS_HOME/tmp"
  (umask 077 && printf '%s:%s\n' "$REGISTRY_TLS_USER" "$(openssl passwd -apr1 "$pw")" >"$REGISTRY_TLS_HOME/htpasswd")
  # As root nginx runs its workers as `nobody`, who could read neither the htpasswd file (read per
  # request) nor its temp directories here: the workers stay root (loopback-only dev proxy).
  [[ $(id -u) -eq 0 ]] && user="user root;"
  # Rewritten on every start so port changes and new secrets apply.
  cat >"$REGISTRY_TLS_CONF" <<EOF
# Written by dev/services/registry_tls.sh on every start; edits are lost.
daemon off;
worker_processes 1;
pid $REGISTRY_TLS_HOME/nginx.pid;
error_log stderr notice;
$user
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $REGISTRY_TLS_HOME/tmp/body;
  proxy_temp_path $REGISTRY_TLS_HOME/tmp/proxy;
  fastcgi_temp_path $REGISTRY_TLS_HOME/tmp/fastcgi;
  uwsgi_temp_path $REGISTRY_TLS_HOME/tmp/uwsgi;
  scgi_temp_path $REGISTRY_TLS_HOME/tmp/scgi;
  client_max_body_size 16m;
  # The bearer token turns basic auth off ("off" as auth_basic's value); anything else must pass it.
  map \$http_authorization \$sluice_auth_realm {
    default "sluice dev registry";
    "~^(?i:bearer) +$token\$" off;
  }
  upstream apicurio { server 127.0.0.1:$upstream; keepalive 8; }
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $TLS_SERVER_CERT;
    ssl_certificate_key $TLS_SERVER_KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      auth_basic \$sluice_auth_realm;
      auth_basic_user_file $REGISTRY_TLS_HOME/htpasswd;
      proxy_pass http://apicurio;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF
  "$REGISTRY_TLS_NGINX" -t -q -e stderr -c "$REGISTRY_TLS_CONF" >>"$LOG_DIR/registry_tls.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/registry_tls.log" >&2; die "registry_tls: nginx rejects $REGISTRY_TLS_CONF"; }
  # -e: the error log before the config is read (else /var/log/nginx/error.log).
  start_bg registry_tls "$REGISTRY_TLS_NGINX" -e stderr -c "$REGISTRY_TLS_CONF"
  wait_for registry_tls 30
  cat >"$RUN_DIR/registry_tls.env" <<EOF
export SLUICE_DEV_REGISTRY_HTTPS_URL=$(_registry_tls_url)
export SLUICE_DEV_REGISTRY_USERNAME=$REGISTRY_TLS_USER
export SLUICE_DEV_REGISTRY_PASSWORD=$pw
export SLUICE_DEV_REGISTRY_TOKEN=$token
EOF
}

# Healthy = through nginx (rig CA, basic auth) the registry's Confluent API answers, and without
# credentials nginx refuses (401).
registry_tls_health() {
  curl -fsS -o /dev/null --max-time 3 --cacert "$TLS_CA" -u "$REGISTRY_TLS_USER:$(tls_secret registry)" \
    "$(_registry_tls_url)/subjects" || return 1
  [[ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$TLS_CA" "$(_registry_tls_url)/subjects")" == 401 ]]
}

registry_tls_version() {
  [[ -x $REGISTRY_TLS_NGINX ]] || { echo "not installed"; return 1; }
  "$REGISTRY_TLS_NGINX" -v 2>&1 | sed 's|^nginx version: ||'
}

registry_tls_endpoint() {
  echo "$(_registry_tls_url) (nginx TLS + basic auth $REGISTRY_TLS_USER or bearer token -> registry)"
}
