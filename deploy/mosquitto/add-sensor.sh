#!/usr/bin/env bash
# Adds (or resets) one broker account in Mosquitto's password file and prints the password
# once: sensors use their sensor id as username (the ACL keys on it).
#
#   bash add-sensor.sh PASSWORD_FILE SENSOR_ID
set -euo pipefail
file="${1:?usage: add-sensor.sh PASSWORD_FILE SENSOR_ID}"
id="${2:?the sensor id (sensor_id in the agent config)}"
[[ "$id" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "sensor ids are 1-64 of A-Z a-z 0-9 _ -" >&2; exit 2; }
password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
if [ -f "$file" ]; then
    mosquitto_passwd -b "$file" "$id" "$password"
else
    mosquitto_passwd -c -b "$file" "$id" "$password"
fi
echo "$id: $password   (put it in the agent's config or CROWDFLOW_BROKER_PASSWORD; reload mosquitto)"
