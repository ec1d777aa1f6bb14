#!/usr/bin/env bash
# Installs what `make test` needs when it is missing: a real Redis server,
# Debian's headless Chromium and promtool (tests start them on loopback);
# buildah and podman for the image test (runc: crun cannot start containers
# on a host with hybrid cgroups v1/v2; vfs storage needs no fuse-overlayfs
# and --network none no slirp4netns); the CA bundle the image carries;
# systemd-analyze to verify the systemd unit; kubectl, whose kustomize
# renders the Kubernetes examples under test.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The forward-proxy e2e test drives curl and Python requests through HTTPS_PROXY.
command -v curl >/dev/null 2>&1 || need+=(curl)
python3 -c 'import requests' >/dev/null 2>&1 || need+=(python3-requests)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing test dependencies: ${need[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install ${need[*]} by hand" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The prometheus package starts a server as a service; the tests need only promtool.
if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
