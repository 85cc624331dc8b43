#!/bin/sh
# Print the Debian mirror this machine's apt uses, for debootstrap (`make image-base`).
# Falls back to the public mirror when apt names none.
set -eu
mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
  | grep -v -e security -e '\[.*\]' | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+//; s/[[:space:]].*$//' | head -n 1)
echo "${mirror:-http://deb.debian.org/debian}"
