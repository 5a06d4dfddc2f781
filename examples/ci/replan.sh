#!/usr/bin/env bash
# Re-plan every committed plan whose cluster file changed since BASE_REV, diff the fresh plan against
# the plan in service, and fail when a gate fails. Run it from the repository root.
#
# usage: examples/ci/replan.sh BASE_REV [PLAN...]
#   BASE_REV  the revision whose plans are in service (in a pull request: the target branch)
#   PLAN      committed plan files to consider (default: every tracked file matching $PLAN_GLOB)
#
# Which cluster a plan belongs to is read from the plan itself (cluster.file, as `hexplan solve` recorded
# it: solve from the repository root so the path is repository-relative). A plan is re-solved when that
# file differs between BASE_REV and the work tree. The old plan is evaluated on the cluster file as it
# was at BASE_REV (a git worktree, so paths inside it such as traces resolve too), the new plan on the
# current one; see `hexplan diff --help`.
#
# environment:
#   HEXPLAN     the hexplan command            (default: hexplan)
#   PYTHON      a Python with PyYAML           (default: python3)
#   PLAN_GLOB   git pathspec of the plans      (default: plans/*.yaml)
#   SOLVE_ARGS  extra `hexplan solve` options  (default: --seed 0)
#   BASELINE    1: solve with --baseline OLD so unchanged replicas stay put (default: 1)
#   GATES       `hexplan diff` gate options    (default: --fail-on-regression 5)
#   OUT         output directory               (default: hexplan-ci): report.md, new/<plan path>
#
# exit status: 0 every re-plan passes its gates (or nothing changed), 1 a gate failed, 2 bad input.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
base=$1
shift
HEXPLAN=${HEXPLAN:-hexplan}
PYTHON=${PYTHON:-python3}
PLAN_GLOB=${PLAN_GLOB:-plans/*.yaml}
SOLVE_ARGS=${SOLVE_ARGS:---seed 0}
BASELINE=${BASELINE:-1}
GATES=${GATES:---fail-on-regression 5}
OUT=${OUT:-hexplan-ci}

if ! git rev-parse --verify --quiet "$base^{commit}" >/dev/null; then
    echo "error: $base is not a revision of this repository (fetch it: actions/checkout with fetch-depth: 0)" >&2
    exit 2
fi
if [[ $# -gt 0 ]]; then plans=("$@"); else mapfile -t plans < <(git ls-files -- "$PLAN_GLOB"); fi

rm -rf "$OUT"
mkdir -p "$OUT/new"
report="$OUT/report.md"
worktree="$OUT/base"
git worktree prune
git worktree add --quiet --detach "$worktree" "$base"
trap 'git worktree remove --force "$worktree" >/dev/null 2>&1 || true' EXIT
: >"$report"

status=0
fail() { # keep the worst status: 2 (bad input) over 1 (gate failed) over 0
    if [[ $1 -gt $status ]]; then status=$1; fi
}
note() {
    echo "$1" | tee -a "$report" >&2
    echo >>"$report"
}

for plan in "${plans[@]}"; do
    if [[ ! -f $plan ]]; then
        note "error: $plan: no such plan file"
        fail 2
        continue
    fi
    cluster=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["cluster"]["file"])' "$plan") || {
        note "error: $plan: cannot read cluster.file from it"
        fail 2
        continue
    }
    if [[ ! -f $worktree/$plan ]]; then
        note "- \`$plan\` is new (not at $base): nothing to compare with."
        continue
    fi
    if [[ ! -f $cluster ]]; then
        note "error: $plan records cluster file $cluster, which does not exist."
        fail 2
        continue
    fi
    if [[ -f $worktree/$cluster ]] && git diff --quiet "$base" -- "$cluster"; then
        echo "$plan: $cluster unchanged since $base" >&2
        continue
    fi
    old_cluster=()
    if [[ -f $worktree/$cluster ]]; then old_cluster=(--old-cluster "$worktree/$cluster"); fi
    new="$OUT/new/$plan"
    mkdir -p "$(dirname "$new")"
    baseline=()
    if [[ $BASELINE == 1 ]]; then baseline=(--baseline "$worktree/$plan"); fi
    echo "$plan: $cluster changed since $base; re-solving" >&2
    # shellcheck disable=SC2086  # SOLVE_ARGS and GATES are option lists, split on purpose
    if ! "$HEXPLAN" solve "$cluster" -o "$new" "${baseline[@]}" $SOLVE_ARGS >&2; then
        note "error: \`hexplan solve $cluster\` failed (see the log)."
        fail 2
        continue
    fi
    rc=0
    # shellcheck disable=SC2086
    "$HEXPLAN" diff "$worktree/$plan" "$new" "${old_cluster[@]}" --new-cluster "$cluster" \
        --format markdown $GATES >>"$report" || rc=$?
    echo >>"$report"
    fail $rc
done

cat "$report"
exit $status
