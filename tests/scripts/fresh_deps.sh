#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup runs from a trap
# tests/scripts/fresh_deps.sh - the Makefile on a machine without the Debian packages, without
# uninstalling anything. .ci/run calls it; `bash tests/scripts/fresh_deps.sh` runs it alone.
#
# Copies the working tree (tracked and new files, no build output) into a temp dir and puts
# fakes first on PATH: dpkg-query reports every package missing and pkg-config knows no library
# until the fake apt-get has "installed" them (it records its arguments and creates a stamp);
# after that both hand over to the real ones. scripts/stack.sh in the copy only records that it
# was called. Then:
#   1. `make -j2 all` must stop before any compile, name the missing packages and say how to
#      get them, and install nothing;
#   2. `make -j2 up` must install (apt-get install with libpq-dev and postgresql-15) before
#      the first compile, compile common/db.c with pkg-config's -I/usr/include/postgresql,
#      build every binary and then start the stack.
# Before the fix, 2 failed as on a fresh machine: the flags were read when make parsed the
# Makefile, before the install, and common/db.c could not find libpq-fe.h.
# Bounded by FRESH_DEPS_TIMEOUT_S (600); the temp dir is deleted on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
TIMEOUT_S=${FRESH_DEPS_TIMEOUT_S:-600}

S=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-deps.XXXXXX")
status=1
STEP=setup
cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ "$status" -eq 0 ]; then
        echo "fresh_deps: passed"
    else
        cv_err "fresh_deps: FAILED at step '$STEP'"
        for f in "$S/calls" "$S/make.log"; do log_tail "$f" 40; done
    fi
    rm -rf "$S"
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit' INT
trap 'status=143; exit' TERM
fail() { cv_err "fresh_deps: $*"; exit 1; }

# ---- the copy and the fakes -------------------------------------------------------------------
mkdir -p "$S/src" "$S/fake"
git -C "$ROOT" ls-files -z -co --exclude-standard |
    tar -C "$ROOT" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$S/src" -xf -
cat >"$S/src/scripts/stack.sh" <<EOF
#!/usr/bin/env bash
echo "stack.sh \$*" >>"$S/calls"
EOF
real_dpkg=$(command -v dpkg-query) || fail "no dpkg-query on this machine"
real_pc=$(command -v pkg-config) || fail "no pkg-config on this machine"
cat >"$S/fake/dpkg-query" <<EOF
#!/bin/sh
[ -e "$S/installed" ] && exec "$real_dpkg" "\$@"
exit 1   # as dpkg-query says when it knows none of the packages asked
EOF
cat >"$S/fake/pkg-config" <<EOF
#!/bin/sh
[ -e "$S/installed" ] && exec "$real_pc" "\$@"
echo "Package libpq was not found in the pkg-config search path." >&2
exit 1
EOF
cat >"$S/fake/apt-get" <<EOF
#!/bin/sh
echo "apt-get \$*" >>"$S/calls"
case " \$* " in *" install "*) touch "$S/installed" ;; esac
EOF
printf '#!/bin/sh\nexec "$@"\n' >"$S/fake/sudo"
chmod +x "$S/fake/"*
export PATH="$S/fake:$PATH"
: >"$S/calls"

# ---- 1. plain make names what is missing -----------------------------------------------------
STEP="make all"
if timeout "$TIMEOUT_S" make -C "$S/src" -j2 all >"$S/make.log" 2>&1; then
    fail "make all succeeded without the packages"
fi
grep -q 'missing Debian packages:.*libpq-dev' "$S/make.log" ||
    fail "make all did not name the missing packages"
grep -q "'make deps' installs them" "$S/make.log" || fail "make all did not say how to install"
! grep -q -- ' -c ' "$S/make.log" || fail "make all compiled something without the packages"
[ ! -s "$S/calls" ] || fail "make all installed something: $(cat "$S/calls")"
echo "fresh_deps: make all stops and says: $(grep -m1 'missing Debian' "$S/make.log")"

# ---- 2. make up installs first, then compiles with the flags of the installed packages -------
STEP="make up"
timeout "$TIMEOUT_S" make -C "$S/src" -j2 up >"$S/make.log" 2>&1 || fail "make up failed"
grep -q '^apt-get .*install.* libpq-dev.* postgresql-15' "$S/calls" ||
    fail "make up did not install libpq-dev and postgresql-15"
grep -q '^stack.sh up$' "$S/calls" || fail "make up did not start the stack"
[ "$(grep -n . "$S/calls" | tail -n 1 | cut -d: -f2-)" = "stack.sh up" ] ||
    fail "the stack started before the install ended"
grep -E -- ' -c common/db\.c ' "$S/make.log" | grep -q -- '-I/usr/include/postgresql' ||
    fail "common/db.c was compiled without -I/usr/include/postgresql"
for b in conveyor-api conveyor-worker conveyor-sim conveyorctl; do
    [ -x "$S/src/bin/$b" ] || fail "make up built no bin/$b"
done
echo "fresh_deps: make up installed ($(grep -m1 'install' "$S/calls" | cut -c1-60)...)," \
    "then compiled with -I/usr/include/postgresql and started the stack"
status=0
