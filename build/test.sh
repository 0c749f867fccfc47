#!/usr/bin/env bash
# Builds the solution and runs every test project. Prints each project's summary, the slowest tests, the
# suite's wall time and, last, "N passed, N failed" summed over all projects (from the TRX files). Exits
# non-zero on any failure.
#
# Nothing can hang the run: every async test has a timeout (TestTimeouts.Default), every gRPC call a test
# makes has a deadline (TestDeadlines), and as a last guard a test host whose current test runs longer than
# HANG_MINUTES is stopped (dotnet test --blame-hang), with that test named in the log and counted as failed.
set -euo pipefail
started=$SECONDS
HANG_MINUTES=${LIFELINE_TEST_HANG_MINUTES:-8}  # keep in step with TestTimeouts.HangMinutes

cd "$(dirname "${BASH_SOURCE[0]}")/.."

./build/setup.sh

results_dir="$PWD/TestResults/test-sh"
rm -rf "$results_dir"
mkdir -p "$results_dir"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The Node worker library: its fault tests (tests/Lifeline.Workers.Tests) run the built demo worker. Built once per
# test.sh invocation (LIFELINE_NODE_WORKER_BUILT guards a nested run); a failed build is reported here and the Node
# tests then fail with what is missing, while the rest of the suite still runs.
if [[ -z ${LIFELINE_NODE_WORKER_BUILT:-} ]]; then
  if (cd services/workers/node && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent); then
    echo "node worker: built services/workers/node/dist"
  else
    echo "node worker: npm ci / npm run build failed in services/workers/node; its fault tests will fail" >&2
  fi
  export LIFELINE_NODE_WORKER_BUILT=1
fi

if ! dotnet build Lifeline.slnx -c Release; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

set +e
dotnet test Lifeline.slnx -c Release --no-build \
  --results-directory "$results_dir" \
  --blame-hang --blame-hang-timeout "${HANG_MINUTES}m" --blame-hang-dump-type none \
  --logger "console;verbosity=normal" \
  --logger "trx"
test_status=$?
set -e

# Sum the <Counters> of every TRX file; errors, timeouts and aborts count as failures.
passed=0 failed=0 files=0
read -r passed failed files < <(python3 - "$results_dir" <<'PY'
import glob, os, sys
import xml.etree.ElementTree as ET
passed = failed = files = 0
for path in glob.glob(os.path.join(sys.argv[1], "**", "*.trx"), recursive=True):
    counters = next((e for e in ET.parse(path).iter() if e.tag.endswith("Counters")), None)
    if counters is None:
        continue
    files += 1
    get = lambda name: int(counters.get(name, "0"))
    passed += get("passed")
    failed += get("failed") + get("error") + get("timeout") + get("aborted")
print(passed, failed, files)
PY
) || true

# Name every failed test with the first lines of its message, so the end of the log says what broke.
python3 - "$results_dir" <<'PY' || true
import glob, os, sys
import xml.etree.ElementTree as ET
for path in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.trx"), recursive=True)):
    for result in ET.parse(path).iter():
        if not result.tag.endswith("UnitTestResult") or result.get("outcome") in ("Passed", "NotExecuted", None):
            continue
        message = next((e.text or "" for e in result.iter() if e.tag.endswith("Message")), "")
        print(f"FAILED {result.get('testName')} ({result.get('duration')})")
        for line in message.strip().splitlines()[:12]:
            print(f"    {line}")
PY

# The slowest tests and the suite's wall time: what to look at when the run gets slow.
python3 - "$results_dir" <<'PY' || true
import glob, os, sys
import xml.etree.ElementTree as ET
def seconds(d):
    h, m, s = (d or "0:0:0").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)
rows = []
for path in glob.glob(os.path.join(sys.argv[1], "**", "*.trx"), recursive=True):
    for result in ET.parse(path).iter():
        if result.tag.endswith("UnitTestResult") and result.get("duration"):
            rows.append((seconds(result.get("duration")), result.get("testName")))
rows.sort(reverse=True)
print("slowest tests:")
for duration, name in rows[:15]:
    print(f"  {duration:7.1f} s  {name}")
PY
echo "test suite wall time: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"

# A test host stopped by --blame-hang leaves a Sequence file naming the tests it had started.
while IFS= read -r sequence; do
  echo "HANG: a test host was stopped after ${HANG_MINUTES} min on one test; the last tests it started ($sequence):"
  grep -o 'Name="[^"]*"' "$sequence" | tail -n 3 | sed 's/^/    /'
done < <(find "$results_dir" -name 'Sequence_*.xml' 2>/dev/null)

if [[ $test_status -ne 0 && $failed -eq 0 ]]; then
  # The test run failed without a failed test in any TRX (a crashed test host, a missing TRX …).
  echo "dotnet test exited with $test_status but no TRX recorded a failure (${files} TRX files); counting it as a failure"
  failed=1
fi
echo "${passed} passed, ${failed} failed"
exit $(( test_status != 0 ? test_status : (failed > 0 ? 1 : 0) ))
