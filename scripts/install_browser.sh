#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (idempotent): tests/test_browser.py drives it, and the
# app's PNG/SVG figure export (plotly's kaleido, sra_viz.export.figure_to_image_bytes) renders with it.
#
# Run: bash scripts/install_browser.sh
# A no-op when /usr/bin/chromium already exists. The Noto CJK and colour-emoji fonts make CJK text
# and emoji render as glyphs (not boxes) in the screenshots the browser test saves.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-noto-cjk fonts-noto-color-emoji
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
