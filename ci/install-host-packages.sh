#!/usr/bin/env bash
# Installs every host package the build and the test suite need, on Debian 12, as root.
# qemu-utils comes from bookworm-backports on these machines, so qemu-system-x86 must too:
# the backports suite is added on the same mirror host the existing apt sources use.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

mirror=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?$' | head -n1 || true)
mirror=${mirror%/}
if [ -n "$mirror" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list.d/ /etc/apt/sources.list; then
  cat > /etc/apt/sources.list.d/stemcell-backports.sources <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt-get update -qq
packages=(
  # disk checks and format round trips
  qemu-utils libxml2-utils gdisk fdisk dosfstools mtools e2fsprogs bzip2 xz-utils time
  # OS image (arch-test: mmdebstrap's check that a foreign architecture runs)
  debootstrap mmdebstrap debian-archive-keyring ubuntu-keyring gnupg ca-certificates arch-test
  # boot tests (qemu-efi-aarch64: the arm64 UEFI firmware, AAVMF)
  ovmf qemu-efi-aarch64 genisoimage cpio
  # stemcell boot: throwaway CA and mbus certificate, the HTTPS ping, SSH for the agent log
  openssl curl openssh-client
)
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# qemu-user: the static user-mode emulators (8.1 and later are static) that run arm64 programs
# in the build's own namespace. Without recommends: qemu-user-binfmt would register them in the
# host's binfmt_misc, which the build never touches.
apt-get install -y -qq --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-system-arm qemu-user qemu-utils >/dev/null
# The suite builds and boots real stemcells: say how much room it has, for when it runs out.
df -h / "$PWD" | sed 's/^/disk: /'
