#!/usr/bin/env bash
# test_package.sh BUILD_DIR SHARED_DIR ROOT - the Debian package installs and runs.
set -euo pipefail
build=$1 shared=$2 root=$3
fail() { echo "FAIL: $*"; exit 1; }

(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls -t "$build"/packages/moelab_*.deb | head -1)
[ -f "$deb" ] || fail "no .deb built"
echo "package: $deb ($(du -h "$deb" | cut -f1))"

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/moelab ./usr/bin/moelab-cli ./usr/share/applications/moelab.desktop \
         ./usr/share/icons/hicolor/scalable/apps/moelab.svg ./usr/share/mime/packages/moelab-gguf.xml \
         ./usr/share/metainfo/io.github.moelab.moelab.metainfo.xml \
         ./usr/share/man/man1/moelab-cli.1 ./usr/share/man/man1/moelab.1; do
  grep -q " $f\$" <<<"$contents" || fail "missing $f in the package"
done
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libqt6widgets6 libssl3 libpcre2-8-0 libc6; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib"
done

rm -rf "$root" && mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
version=$("$root/usr/bin/moelab-cli" --version)
grep -q "^moelab-cli " <<<"$version" || fail "moelab-cli --version"
if [ -f "$shared/fixtures/models/mixtral-moe/mixtral-moe.Q8_0.gguf" ]; then
  card=$("$root/usr/bin/moelab-cli" inspect --json "$shared/fixtures/models/mixtral-moe/mixtral-moe.Q8_0.gguf")
  grep -q '"expert_count": 8' <<<"$card" || fail "inspect from the package"
  model="$shared/fixtures/models/mixtral-moe/mixtral-moe.Q8_0.gguf"
else
  echo "skipped inspect: fixtures not found at $shared"
  model=""
fi
QT_QPA_PLATFORM=offscreen "$root/usr/bin/moelab" --screenshot "$root/smoke.png" $model
[ -s "$root/smoke.png" ] || fail "no GUI smoke screenshot"
desktop-file-validate "$root/usr/share/applications/moelab.desktop" || fail "desktop-file-validate"
appstreamcli validate --no-net --pedantic "$root/usr/share/metainfo/io.github.moelab.moelab.metainfo.xml" \
  || appstreamcli validate --no-net "$root/usr/share/metainfo/io.github.moelab.moelab.metainfo.xml" \
  || fail "appstreamcli validate"
man -l "$root/usr/share/man/man1/moelab-cli.1" >/dev/null 2>&1 || true
echo "PASS: package builds, installs into a root and runs"
