#!/usr/bin/env bash
# Install Debian's chromium (and a CJK font, so the Chinese portal page renders) for the
# browser test of public/index.html. Playwright drives this binary through executable_path;
# it never downloads a browser of its own. Not root and not installed: the test is skipped
# with the reason.
set -euo pipefail
fonts=$(fc-list 2>/dev/null || true)
if command -v chromium >/dev/null 2>&1 && grep -qi "wenquanyi\|noto sans cjk" <<<"$fonts"; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium and a CJK font from Debian packages…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null \
    || echo "chromium could not be installed: the portal browser test will be skipped"
else
  echo "chromium is not installed and we are not root: the portal browser test will be skipped"
fi
