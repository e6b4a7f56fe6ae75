#!/bin/bash
# npm run e2e: the VM boot tests alone. Builds dist/cvm-unlock (unless CVM_E2E_NO_BUILD=1), the
# cached images (test/e2e/setup.sh: packages, kernel, disk, swtpm, initramfs), then boots.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "${CVM_E2E_NO_BUILD:-0}" = 1 ] || npm run build
bash test/e2e/setup.sh
exec npx vitest run --project e2e "$@"
