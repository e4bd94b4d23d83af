#!/bin/bash
# tests/fuzz/run.sh SECONDS [TARGET...] -- builds the libFuzzer targets if
# needed and runs each for SECONDS (default: all of tests/fuzz/fuzz_*.c).
#
#   tests/fuzz/run.sh 20              the short run tests/run calls
#   tests/fuzz/run.sh 300             the long run (docs/reliability.md)
#   tests/fuzz/run.sh 60 fuzz_names   one target
#
# Each target first replays its reproducers of known bugs
# (tests/fuzz/crashes/<target>/*; a fixed bug must stay fixed), then
# fuzzes from a working copy of its seeds (tests/fuzz/corpus/<target>,
# merged into $BUILD/corpus/<target>, which grows between runs; the
# committed seeds are never written), with RPFS_FUZZ_SKIP_KNOWN=1 so the
# search goes past the known bugs (see fuzz.h).  A crash, leak, sanitizer report,
# timeout or broken invariant fails the run; its input is kept as
# $BUILD/artifacts/<target>/crash-* and the path printed.  Exit status 0
# only when every target ran clean.
#
# Env: RPFS_FUZZ_BUILD (default <repo>/build-fuzz), CC (default clang),
# FUZZ_ARGS (extra libFuzzer flags), JOBS (build parallelism and targets
# fuzzed at once; default nproc).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${RPFS_FUZZ_BUILD:-$ROOT/build-fuzz}
SECS=${1:-20}
shift || true
JOBS=${JOBS:-$(nproc)}

case $SECS in
'' | *[!0-9]*)
	echo "usage: $0 SECONDS [TARGET...]" >&2
	exit 2
	;;
esac

if [ $# -gt 0 ]; then
	TARGETS=("$@")
else
	TARGETS=()
	for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
		TARGETS+=("$(basename "$f" .c)")
	done
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="${CC:-clang}" \
		-DCMAKE_BUILD_TYPE=Debug -DRPFS_FUZZ=ON >"$BUILD.cmake.log" 2>&1 ||
		{
			cat "$BUILD.cmake.log"
			exit 1
		}
fi
cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" >"$BUILD/fuzz-build.log" 2>&1 ||
	{
		tail -50 "$BUILD/fuzz-build.log"
		echo "fuzz: build failed (log: $BUILD/fuzz-build.log)"
		exit 1
	}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# fuzz_one TARGET: replay its reproducers, then fuzz it; prints its
# report lines, exit status 0 when clean.
fuzz_one() {
	local t=$1 bin seeds work art log repro start rc execs n result bad=0
	bin=$BUILD/tests/fuzz/$t
	seeds=$ROOT/tests/fuzz/corpus/$t
	work=$BUILD/corpus/$t
	art=$BUILD/artifacts/$t
	log=$BUILD/logs/$t.log
	mkdir -p "$work" "$art" "$(dirname "$log")"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null

	# Known reproducers first: each must now run clean.
	repro=$ROOT/tests/fuzz/crashes/$t
	if [ -d "$repro" ] && [ -n "$(ls -A "$repro" 2>/dev/null)" ]; then
		if ! "$bin" -runs=1 "$repro"/* >"$log.repro" 2>&1; then
			printf '%-24s %8s %10s %8s  %s\n' "$t" - - - \
				"FAILED: a known reproducer still crashes"
			grep -E "^(==|SUMMARY|.*runtime error|.*invariant)" \
				"$log.repro" | head -5 | sed 's/^/    /'
			echo "    replay: $bin $repro/*"
			bad=1
		fi
	fi

	start=$SECONDS
	# shellcheck disable=SC2086
	RPFS_FUZZ_SKIP_KNOWN=1 "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" \
		${FUZZ_ARGS:-} "$work" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	n=$(find "$work" -type f | wc -l)
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc)"
		bad=1
	fi
	printf '%-24s %8s %10s %8s  %s\n' "$t" $((SECONDS - start)) \
		"${execs:-?}" "$n" "$result"
	if [ $rc -ne 0 ]; then
		grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*invariant broken)" \
			"$log" | head -5 | sed 's/^/    /'
		grep -o "Test unit written to .*" "$log" | sed 's/^/    /'
		echo "    log: $log"
	fi
	return $bad
}

# One target per CPU at a time (each fuzzer is single-threaded); reports
# are printed in target order once all have ended.
mkdir -p "$BUILD/logs"
declare -A pid_of
for t in "${TARGETS[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n || true
	done
	fuzz_one "$t" >"$BUILD/logs/$t.report" 2>&1 &
	pid_of[$t]=$!
done
failed=()
printf '%-24s %8s %10s %8s  %s\n' target seconds execs corpus result
for t in "${TARGETS[@]}"; do
	wait "${pid_of[$t]}" || failed+=("$t")
	cat "$BUILD/logs/$t.report"
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets clean for ${SECS}s each"
