#!/usr/bin/env bash
# make demo: SeaweedFS and Dagster on 127.0.0.1, the sample corpus uploaded, the sensor takes it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMO=.venv/bin/memo
UI_PORT=${MEMO_UI_PORT:-3000}
eval "$($MEMO env)"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

# Ctrl-C while the demo is starting or waiting stops what it started
trap 'echo; echo "stopping..."; scripts/stop.sh; exit 130' INT TERM

S3_PORT=${MEMO_S3_ENDPOINT##*:}
# two identities: the pipeline's (from `memo env`) and an uploader's that may write only landing/ (`memo upload` uses it)
.venv/bin/python -m memo_pipelines.storage.seaweed start --dir "$MEMO_HOME/seaweed" --port "$S3_PORT" \
  --uploader-credentials "$MEMO_HOME/uploader-credentials.json"

if [[ -f "$MEMO_HOME/dagster.pid" ]] && kill -0 "$(cat "$MEMO_HOME/dagster.pid")" 2>/dev/null; then
  echo "Dagster already running (pid $(cat "$MEMO_HOME/dagster.pid"))"
else
  # its own session, so `make stop` can end dagster dev with its daemon and code server by process group
  setsid .venv/bin/dagster dev -h 127.0.0.1 -p "$UI_PORT" -w workspace.yaml > "$MEMO_HOME/dagster.log" 2>&1 < /dev/null &
  echo $! > "$MEMO_HOME/dagster.pid"
  echo -n "starting Dagster"
  for _ in $(seq 120); do
    if curl -sf "http://127.0.0.1:$UI_PORT/server_info" > /dev/null; then break; fi
    if ! kill -0 "$(cat "$MEMO_HOME/dagster.pid")" 2>/dev/null; then echo; tail -30 "$MEMO_HOME/dagster.log"; exit 1; fi
    echo -n "."; sleep 1
  done
  echo
fi

# questions a person at the sample company would ask, written by hand: every candidate is scored on them
$MEMO evals memo_pipelines/sample_evals/staff_questions.jsonl
$MEMO upload memo_pipelines/sample_corpus
echo "The landing sensor turns the upload into corpus version v000001 within about 30 s."
echo "Watch it in the Dagster UI: http://127.0.0.1:$UI_PORT"
$MEMO wait --versions 1 --timeout "${MEMO_DEMO_TIMEOUT:-3600}"
$MEMO status
cat <<MSG

Dagster UI:  http://127.0.0.1:$UI_PORT   (SeaweedFS S3 on $MEMO_S3_ENDPOINT)
Ask the memory-augmented executive:
  .venv/bin/memo ask "Who designed the Wren Building?" --trace
Compare with the untrained base model as memory:
  .venv/bin/memo ask "Who designed the Wren Building?" --base
Check the answer against the documents, quoting the passage that supports it:
  .venv/bin/memo ask "Who is the manager of the Kesby plant?" --hybrid
Add a document and watch a second version train on top of the first:
  .venv/bin/memo upload memo_pipelines/sample_corpus_update && .venv/bin/memo wait --versions 2
Stop everything: make stop
MSG
