# The local cluster's config files (sourced by scripts/cluster.sh, which sets ETC, NODES and
# the ports and secrets of its state before calling these): one TOML per node and haproxy's.
# shellcheck shell=bash disable=SC2154

write_node_config() {
	local n=$1
	cat >"$ETC/$n.toml" <<EOF
# Written by scripts/cluster.sh for the local cluster; rewritten on every \`up\`.
[node]
id = "$n"

[server]
listen = "127.0.0.1:$(port_of "$n")"
# haproxy checks /readyz every 500 ms and takes a node out after 2 failures: keep serving
# sessions that long after SIGTERM, then hand them over at 1000/s with 500 ms of jitter.
drain_delay_ms = 1500
drain_close_rate = 1000
drain_spread_ms = 10000
drain_reconnect_jitter_ms = 500
shutdown_timeout_s = 10
# Clients come through haproxy, which sends X-Forwarded-For.
trusted_proxies = ["127.0.0.1"]

[auth]
jwt_secret = "$JWT_SECRET"
api_keys = ["$API_KEY"]
admin_keys = ["$ADMIN_KEY"]

[store]
backend = "mongo"

[store.mongo]
url = "mongodb://127.0.0.1:$MONGO_PORT"
database = "herald"

[routes]
backend = "redis"
redis_url = "redis://127.0.0.1:$REDIS_PORT"
key_prefix = "herald"

[cluster]
secret = "$CLUSTER_SECRET"
internal_listen = "127.0.0.1:$(internal_of "$n")"
EOF
}

write_haproxy_config() {
	local n servers="" tracked=""
	for n in "${NODES[@]}"; do
		servers+="    server $n 127.0.0.1:$(port_of "$n") check"$'\n'
		tracked+="    server $n 127.0.0.1:$(port_of "$n") track herald_ws/$n"$'\n'
	done
	cat >"$ETC/haproxy.cfg" <<EOF
# Written by scripts/cluster.sh: Herald's local load balancer (Debian haproxy 2.6+).
global
    log stdout format raw local0 info
    maxconn 8000

defaults
    mode http
    log global
    # The path without its query string: tokens travel in /ws?token=... and stay out of logs.
    log-format "%ci [%tr] %ft %b/%s %si:%sp %ST %B %Tw/%Tc/%Tr/%Ta \"%HM %HP\" retries=%rc"
    option forwardfor
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # An open WebSocket: Herald pings every 25 s and closes silent clients after 55 s.
    timeout tunnel 120s
    timeout client-fin 5s
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2

frontend public
    bind 127.0.0.1:$PUBLIC_PORT
    acl ws path /ws
    acl api path_beg /api/
    acl node_only path /api/v1/stats
    acl demo path /demo /client/herald.js
    # Only the public surface: WebSocket upgrades, the REST API, the demo page. Node-local and
    # operator endpoints go through the ops port; internal listeners are not reachable at all.
    http-request return status 404 content-type application/json string "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}" if node_only
    http-request return status 404 content-type application/json string "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}" if !ws !api !demo
    use_backend herald_ws if ws
    default_backend herald_api

# WebSocket sessions: the node with the fewest. A draining node answers upgrades with 503
# before its health check fails: retry them on another node.
backend herald_ws
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
$servers
# The REST API. A POST is retried only when it never reached a node (producers retry the
# rest with their idempotency_key).
backend herald_api
    balance roundrobin
    retries 3
    option redispatch 1
    retry-on conn-failure
$tracked
frontend ops
    bind 127.0.0.1:$OPS_PORT
    stats enable
    stats uri /haproxy
    stats refresh 2s
    default_backend herald_ops

backend herald_ops
    balance first
$tracked
EOF
}

write_configs() {
	local n
	for n in "${NODES[@]}"; do
		write_node_config "$n"
	done
	write_haproxy_config
}
