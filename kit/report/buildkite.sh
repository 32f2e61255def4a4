#!/usr/bin/env bash
# CRCR's reporter on a Buildkite agent: Buildkite's variables mapped to the reporter's, and a
# Buildkite OIDC token for the relay's audience. In a step (or a post-command hook):
#
#   STATUS=completed bash path/to/kit/report/buildkite.sh           # PR and push runs
#   STATUS=completed DELIVERY_ID_OVERRIDE="$UPSTREAM_SHA" EVENT_TYPE_OVERRIDE=nightly \
#     bash path/to/kit/report/buildkite.sh                          # a nightly run
#
# CALLBACK_URL names the relay. A PR or push build passes the dispatch's client_payload in
# CLIENT_PAYLOAD. CONCLUSION defaults to the command's exit status (post-command hooks).
# As the reporter itself, it never fails the step unless FAIL_ON_ERROR=true.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

give_up() {
    echo "CRCR: warning: nothing was reported: $1"
    case "$(printf '%s' "${FAIL_ON_ERROR:-false}" | tr '[:upper:]' '[:lower:]')" in
        true | 1 | yes | on) exit 1 ;;
    esac
    exit 0
}

[[ -n "${BUILDKITE_BUILD_ID:-}" ]] || give_up "BUILDKITE_BUILD_ID is not set: not a Buildkite job"
command -v python3 >/dev/null 2>&1 || give_up "python3 is not installed on this agent"
command -v buildkite-agent >/dev/null 2>&1 || give_up "buildkite-agent is not on PATH"

export STATUS="${STATUS:-completed}"
export RUN_ID="${BUILDKITE_BUILD_ID}"  # a UUID: the relay keeps run ids as text
retries="${BUILDKITE_RETRY_COUNT:-0}"
[[ "${retries}" =~ ^[0-9]+$ ]] || retries=0
export RUN_ATTEMPT="$((retries + 1))"
export WORKFLOW_NAME="${WORKFLOW_NAME:-${BUILDKITE_PIPELINE_SLUG:-buildkite}}"
export WORKFLOW_URL="${WORKFLOW_URL:-${BUILDKITE_BUILD_URL:-}}"
export JOB_NAME="${JOB_NAME:-${BUILDKITE_LABEL:-${BUILDKITE_STEP_KEY:-}}}"
# The job's own id (a retry is a new job), as GitHub's check run id is the job's.
export CHECK_RUN_ID="${CHECK_RUN_ID:-${BUILDKITE_JOB_ID:-${RUN_ID}-${RUN_ATTEMPT}}}"
if [[ -z "${CONCLUSION:-}" && -n "${BUILDKITE_COMMAND_EXIT_STATUS:-}" ]]; then
    if [[ "${BUILDKITE_COMMAND_EXIT_STATUS}" == 0 ]]; then CONCLUSION=success; else CONCLUSION=failure; fi
fi
export CONCLUSION="${CONCLUSION:-}"

# One token for every attempt, so it must outlive the reporter's retry budget. Buildkite's
# tokens carry no jti and RS256 signatures are deterministic: two tokens asked for in the same
# second with the same lifetime are one token, which the relay takes once (`replayed`). Each
# report of a job asks for a lifetime a second longer than the one before, so none repeats.
budget="${RETRY_BUDGET:-120}"
budget="${budget%%.*}"
[[ "${budget}" =~ ^[0-9]+$ ]] || budget=120
lifetime="$((budget + 60 > 300 ? budget + 60 : 300))"
reports="${TMPDIR:-/tmp}/crcr-report-${CHECK_RUN_ID//[^A-Za-z0-9-]/_}.count"
count="$(cat "${reports}" 2>/dev/null || echo 0)"
[[ "${count}" =~ ^[0-9]+$ ]] || count=0
echo "$((count + 1))" >"${reports}" 2>/dev/null || true
# organization_id and pipeline_id are optional claims: the relay's provider map needs them.
if ! OIDC_TOKEN="$(buildkite-agent oidc request-token \
    --audience "${OIDC_AUDIENCE:-pytorch-cross-repo-ci-relay}" \
    --lifetime "$((lifetime + count))" --claim organization_id,pipeline_id)"; then
    give_up "buildkite-agent oidc request-token failed"
fi
export OIDC_TOKEN

exec python3 "${here}/crcr_report.py"
