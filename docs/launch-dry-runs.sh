#!/bin/bash
# Regenerates docs/launch-dry-runs.md: `bash docs/launch-dry-runs.sh` from the repo root after `make install`.
set -e
root=$PWD
out=docs/launch-dry-runs.md
work=$(mktemp -d)
{
echo "# hexlaunch dry runs of every example plan"
echo
echo "What \`hexlaunch PLAN --dry-run\` prints for the plan \`hexplan solve\` makes from each file in examples/"
echo "(seed 0). No Ray cluster is contacted: hosts are shown as the plan's node names (at launch they become the"
echo "addresses of the Ray nodes labelled with those names), and the router's interpreter path is the one of the"
echo "machine that generated this page. vLLM loads the plan's \`model_path\` (the catalogue's Hugging Face id)."
echo "\`make test-vllm\` checks every argv of these plans against vLLM's own parser. Regenerate with"
echo "\`bash docs/launch-dry-runs.sh\` (the solver's plans change as the solver does)."
for cluster in $(ls examples/*.yaml | grep -v /offers-); do  # offers files are provision's input
  name=$(basename $cluster .yaml)
  .venv/bin/hexplan solve $cluster -o $work/$name.plan.yaml --time-limit 30 > /dev/null
  echo
  echo "## $name"
  echo
  echo "\`hexplan solve $cluster\` then \`hexlaunch $name.plan.yaml --dry-run\`:"
  echo
  echo '```text'
  (cd $work && $root/.venv/bin/hexlaunch $name.plan.yaml --dry-run --state-dir /tmp/hexlaunch-docs) || true
  echo '```'
done
} > $out
rm -rf $work
