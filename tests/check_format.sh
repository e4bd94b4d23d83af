#!/bin/sh
# Checks that every C source and header of fs/, net/, tests/unit and
# tests/fuzz is formatted as .clang-format says (clang-format --dry-run
# -Werror).  Prints the offending files and exits non-zero; fix with
#   clang-format -i FILE
set -eu
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
files=$(find fs net tests/unit tests/fuzz -name '*.[ch]' 2>/dev/null | sort)
if [ -z "$files" ]; then
	echo "check_format: no C files found" >&2
	exit 1
fi
bad=""
n=0
for f in $files; do
	n=$((n + 1))
	if ! "$CF" --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then
		bad="$bad $f"
	fi
done
if [ -n "$bad" ]; then
	echo "check_format: not clang-format clean (run clang-format -i):"
	for f in $bad; do
		echo "  $f"
		"$CF" --style=file "$f" | diff -u "$f" - | head -20 || true
	done
	exit 1
fi
echo "check_format: $n files clean"
