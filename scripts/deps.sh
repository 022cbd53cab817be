#!/usr/bin/env bash
# Installs the Debian 12 packages moelab needs to build and test (only the missing ones),
# non-interactively; uses sudo when not root. Usage: scripts/deps.sh
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  qt6-base-dev qt6-base-dev-tools qt6-svg-dev qt6-charts-dev qt6-tools-dev libgl-dev
  libvulkan-dev mesa-vulkan-drivers vulkan-tools vulkan-validationlayers glslc libglm-dev libimgui-dev
  libsqlite3-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libzstd-dev libssl-dev
  libcpp-httplib-dev
  xvfb xauth clang-14 clang-format-14 libclang-rt-14-dev
  help2man desktop-file-utils appstream dpkg-dev shared-mime-info
  chromium poppler-utils fonts-wqy-microhei
  python3 python3-pip
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
