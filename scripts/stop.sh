#!/usr/bin/env bash
# make stop: end what make demo started, by process id (Dagster by its process group, SeaweedFS by its pid file).
cd "$(dirname "$0")/.."
MEMO_HOME=${MEMO_HOME:-$PWD/.memo}
if [[ -f "$MEMO_HOME/dagster.pid" ]]; then
  pid=$(cat "$MEMO_HOME/dagster.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped Dagster (pid $pid)"
  fi
  rm -f "$MEMO_HOME/dagster.pid"
fi
if [[ -d "$MEMO_HOME/seaweed" ]]; then
  .venv/bin/python -m memo_pipelines.storage.seaweed stop --dir "$MEMO_HOME/seaweed"
fi
