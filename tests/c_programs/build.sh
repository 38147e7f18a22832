#!/bin/sh
# Rebuilds the test-only C programs (unsafe/ and their fixed/ twins) in place
# with the same flags as the examples.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../../examples/bpf/build.sh" "$here"/unsafe/*.c "$here"/fixed/*.c
