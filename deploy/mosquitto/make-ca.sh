#!/usr/bin/env bash
# A self-signed CA and a server certificate for trials (use your organisation's CA in
# production), plus optional client certificates.
#
#   bash make-ca.sh DIR BROKER_HOST_OR_IP [CLIENT_NAME...]
#
# Writes DIR/ca.pem, DIR/ca.key (keep it offline), DIR/server.pem, DIR/server.key and, per
# client, DIR/CLIENT.pem and DIR/CLIENT.key. Needs openssl.
set -euo pipefail
dir="${1:?usage: make-ca.sh DIR BROKER_HOST_OR_IP [CLIENT_NAME...]}"
host="${2:?the broker host name or IP address that sensors connect to}"
shift 2
mkdir -p "$dir"
cd "$dir"
days=825
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

[ -f ca.pem ] || openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 3650 \
    -subj "/CN=crowdflow trial CA" 2>/dev/null
ip_address='^[0-9.]+$|:'
if [[ "$host" =~ $ip_address ]]; then san="IP:$host"; else san="DNS:$host"; fi

sign() { # name subject extensions
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
        -days "$days" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
sign server "/CN=$host" "subjectAltName=$san\nextendedKeyUsage=serverAuth\n"
for client in "$@"; do
    sign "$client" "/CN=$client" "extendedKeyUsage=clientAuth\n"
done
chmod 600 ./*.key
# Mosquitto started as root reads its key as the mosquitto user.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto: server.key
    echo "server.key: owned by mosquitto (the broker reads it as that user)"
fi
echo "CA: $dir/ca.pem (give it to every sensor and aggregator as ca_file)"
echo "server: $dir/server.pem, $dir/server.key (for $san)"
