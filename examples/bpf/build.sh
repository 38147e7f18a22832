#!/bin/sh
# Compiles eBPF C programs into BPF objects, as for the kernel:
#   clang -O2 -g -target bpf -mcpu=v3 with libbpf's headers (Debian: libbpf-dev).
#
# Usage:
#   examples/bpf/build.sh                      rebuild every examples/bpf/*.c in place
#   examples/bpf/build.sh [-o OUTDIR] FILE.c... build the given sources (into OUTDIR)
#
# Objects are reproducible: sources are compiled from their own folder under
# relative names and debug paths are mapped, so no absolute build path ends up
# in the committed .o files. The clang version used is recorded in
# CLANG_VERSION next to the objects (tests compare rebuilt objects byte for
# byte only when the same clang is installed).
set -eu

CLANG=${CLANG:-clang}
here=$(cd "$(dirname "$0")" && pwd)
outdir=
if [ "${1:-}" = "-o" ]; then
	[ $# -ge 2 ] || { echo "build.sh: -o needs a folder" >&2; exit 2; }
	outdir=$2
	shift 2
fi
if [ $# -eq 0 ]; then
	set -- "$here"/*.c
fi

# The kernel uapi headers include <asm/types.h>, which Debian keeps under the
# multiarch folder.
multiarch=$($CLANG -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"
libbpf_include=${LIBBPF_INCLUDE:-/usr/include}
if [ ! -f "$libbpf_include/bpf/bpf_helpers.h" ]; then
	echo "build.sh: $libbpf_include/bpf/bpf_helpers.h not found: install libbpf-dev or set LIBBPF_INCLUDE" >&2
	exit 1
fi

for src in "$@"; do
	case $src in
	*.c) ;;
	*) echo "build.sh: not a C source: $src" >&2; exit 2 ;;
	esac
	srcdir=$(cd "$(dirname "$src")" && pwd)
	name=$(basename "$src" .c)
	dest=${outdir:-$srcdir}
	mkdir -p "$dest"
	dest=$(cd "$dest" && pwd)
	(
		cd "$srcdir"
		$CLANG -O2 -g -target bpf -mcpu=v3 \
			-Wall -Werror \
			-fdebug-prefix-map="$srcdir"=. \
			-fdebug-compilation-dir=. \
			-I"$libbpf_include" -I"/usr/include/$multiarch" \
			-c "$name.c" -o "$dest/$name.o"
	)
	echo "built $dest/$name.o"
	$CLANG --version | head -n 1 >"$dest/CLANG_VERSION"
done
