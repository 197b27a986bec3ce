#!/bin/bash
# Will a device call carry this tree? The device tool copies the tracked files plus the paths a
# call names in `carry` (e.g. .whl) and refuses the call when they pass 64 MiB together: check
# before a lease, not after a refused call.
#
#   bash tools/carry_size.sh .whl          # run in the repository root
#
# Prints the tracked, carried and total sizes against the limit; exits 1 when over it.
# CARRY_LIMIT_BYTES overrides the limit (tests).
set -euo pipefail
limit=${CARRY_LIMIT_BYTES:-67108864}
# (a tracked file deleted in the work tree is not carried: stat skips it)
tracked=$({ git ls-files -z | xargs -0 -r stat -c %s -- 2>/dev/null || true; } \
  | awk '{s += $1} END {print s + 0}')
carried=0
for p in "$@"; do
  [ -e "$p" ] || { echo "carry path $p does not exist" >&2; exit 2; }
  n=$(find "$p" -type f -print0 | xargs -0 -r stat -c %s -- | awk '{s += $1} END {print s + 0}')
  carried=$((carried + n))
done
total=$((tracked + carried))
awk -v t="$tracked" -v c="$carried" -v s="$total" -v l="$limit" 'BEGIN {
  printf "tracked %.1f MB + carried %.1f MB = %.1f MB of %.1f MB (%.1f MB left)\n",
         t / 1e6, c / 1e6, s / 1e6, l / 1e6, (l - s) / 1e6 }'
[ "$total" -le "$limit" ] || { echo "over the device tool's carry limit: drop or move files first" >&2; exit 1; }
