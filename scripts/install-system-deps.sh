#!/usr/bin/env bash
# Debian packages the test suite needs (real peers: video/RTSP tools, the browser). Idempotent; root only.
set -euo pipefail
packages=(
  gir1.2-gst-rtsp-server-1.0
  python3-gst-1.0
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly
  chromium
  mosquitto
  mosquitto-clients
  openssl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run this script as root to install them)" >&2
    exit 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
