#!/usr/bin/env bash
# Fails when anything in the tree links plain libsqlite3: with it in the process, SQLCipher's
# PRAGMA key is silently ignored and profiles are written in plaintext.
# usage: check_no_libsqlite3.sh SOURCE_DIR BINARY...
set -u
src=$1; shift
status=0
if grep -rnIE 'SQLite::SQLite3|find_package\(SQLite3|-lsqlite3\b|pkg_check_modules\([^)]*[ (]sqlite3[ )]' \
     --include=CMakeLists.txt --include='*.cmake' --include='*.pc.in' "$src" \
     --exclude-dir=build --exclude-dir='build-*' --exclude-dir=.git; then
  echo "FAIL: the build files above link libsqlite3" >&2
  status=1
fi
for bin in "$@"; do
  if ldd "$bin" | grep -E 'libsqlite3\.so'; then
    echo "FAIL: $bin loads libsqlite3" >&2
    status=1
  fi
  if ! ldd "$bin" | grep -q 'libsqlcipher\.so'; then
    echo "FAIL: $bin does not load libsqlcipher" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "ok: no libsqlite3 in the build files or in: $*"
exit $status
