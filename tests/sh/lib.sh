# Sourced by shell tests. Gives ok/fail helpers and prints a RESULT line at exit.
# G4 is the gemma4c binary under test, REF the golden data folder.
set -u
BUILD=${BUILD:-build}
G4=${G4:-$BUILD/gemma4c}
SHARED=${G4_SHARED:-../shared}
REF=$SHARED/testdata/gemma4-ref
TMP=$(mktemp -d)
_p=0; _f=0
ok()   { _p=$((_p + 1)); echo "ok   $*"; }
fail() { _f=$((_f + 1)); echo "FAIL $*"; }
# check DESC CMD...: passes when CMD exits 0
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
trap 'rm -rf "$TMP"; echo "RESULT $_p $_f"' EXIT
