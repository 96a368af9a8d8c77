"""`memo`: ask the memory-augmented executive, upload documents, watch versions, roll back.

Executive and memory are chosen by flags or environment: in-process local models by default, or any
OpenAI-compatible endpoint (base URL, model name, API key read from the environment variable you name).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from memo_pipelines.apps.settings import Settings, local_credentials
from memo_pipelines.storage.layout import LANDING_PREFIX
from memo_pipelines.storage.objectstore import StoreError

def _llm_spec(prefix: str, backend: str, model: str, base_url: str):
    from memo_pipelines.llm.backends import LLMSpec

    return LLMSpec.from_values(os.environ, prefix=f"MEMO_{prefix}_", upper=True, backend=backend, model=model, base_url=base_url)


EMBEDDED_DIRECT = ("memo: the embedded 135M executive's replies parse (each stage's schema constrains its decoding) but it plans "
                   "poorly and slowly, so the memory answers directly (--mode single or staged runs the protocol with it; "
                   "--executive openai ... names a capable executive)")


def choose_mode(args, executive_spec) -> str:
    """--mode when given; otherwise direct with the embedded executive, which never returns usable JSON, and staged
    with any executive the user named. Says so once on stderr when it chooses direct."""
    from memo_pipelines.protocol import ProtocolConfig

    if args.mode:
        return args.mode
    if executive_spec.backend == "local" and not executive_spec.model:
        print(EMBEDDED_DIRECT, file=sys.stderr)
        return "direct"
    return ProtocolConfig.mode


def protocol_config(args, mode: str):
    from memo_pipelines.protocol import ProtocolConfig

    return ProtocolConfig(mode=mode, paraphrases=args.paraphrases, narrow_turns=args.narrow_turns, gather_turns=args.gather_turns,
                          call_timeout_s=args.call_timeout, deadline_s=args.deadline)


def follows_registry(args, memory_spec) -> bool:
    """The memory is the registry's promoted model (not a fixed directory, endpoint or the base model)."""
    return not args.base and memory_spec.backend == "local" and not memory_spec.model


def build_executive(args, settings: Settings, concurrency: int | None = None):
    """(executive or None in direct mode, protocol config); `concurrency` bounds its requests in flight unless
    MEMO_EXECUTIVE_CONCURRENCY does."""
    from memo_pipelines.llm.backends import load_chat_model
    from memo_pipelines.llm.embedded import embedded_model_dir

    executive_spec = _llm_spec("EXECUTIVE", args.executive, args.executive_model, args.executive_base_url)
    if concurrency and not os.environ.get("MEMO_EXECUTIVE_CONCURRENCY"):
        executive_spec = dataclasses.replace(executive_spec, concurrency=concurrency)
    config = protocol_config(args, choose_mode(args, executive_spec))
    if config.mode == "direct":  # the executive would never be asked: do not load it
        return None, config
    default_dir = embedded_model_dir(settings.work_dir / "embedded") if executive_spec.backend == "local" and not executive_spec.model else None
    return load_chat_model(executive_spec, default_local_dir=default_dir), config


def build_memory(args, settings: Settings):
    """(memory model, its spec, sources) of a memory that does not follow the registry, or of the promoted one now."""
    from memo_pipelines.llm.backends import load_chat_model
    from memo_pipelines.llm.embedded import embedded_model_dir
    from memo_pipelines.protocol import SourceIndex

    memory_spec = _llm_spec("MEMORY", args.memory, args.memory_model, args.memory_base_url)
    sources = None
    if not args.base and (follows_registry(args, memory_spec) or os.environ.get("MEMO_S3_ENDPOINT")):
        registry = settings.registry()
        promoted = registry.promoted_id()
        if promoted is None and follows_registry(args, memory_spec):
            raise SystemExit("no promoted memory model yet: run `make demo` or wait for the pipeline to promote one")
        if promoted is not None:
            sources = SourceIndex.from_registry(registry, promoted)
            if follows_registry(args, memory_spec):
                memory_spec = dataclasses.replace(memory_spec, model=str(registry.fetch(promoted)))
    if memory_spec.backend == "local" and not memory_spec.model:
        memory_spec = dataclasses.replace(memory_spec, model=str(embedded_model_dir(settings.work_dir / "embedded")))
    return load_chat_model(memory_spec), memory_spec, sources


def build_protocol(args, settings: Settings):
    """The protocol with the chosen executive and memory; sources come from the promoted model's lineage in the registry."""
    from memo_pipelines.protocol import Protocol

    memory, memory_spec, sources = build_memory(args, settings)
    executive, config = build_executive(args, settings)
    return Protocol(executive, memory, config, sources), memory_spec


def print_trace(result, memory_spec) -> None:
    print(f"memory: {memory_spec.backend}:{Path(memory_spec.model).name if memory_spec.backend == 'local' else memory_spec.model}")
    for turn in result.trace:
        print(f"[{turn.stage}] {len(turn.sub_questions)} sub-questions, one memory batch")
        for question, answer in zip(turn.sub_questions, turn.memory_answers):
            print(f"  Q: {question}\n  A: {answer}")
    for question in result.retired:
        print(f"retired: {question}")
    for note in result.notes:
        print(f"note: {note}")
    if result.target:
        print(f"target: {result.target}")
    print(f"calls: {result.executive_calls} executive, {result.memory_calls} memory, {result.elapsed_s:.1f} s")


# notes of a protocol that ran as planned; every other note says a call failed or a budget cut the answer short
ROUTINE_NOTES = ("narrowing ended: the executive had no new questions", "narrowing budget of ")


def degradations(result) -> list[str]:
    return [note for note in result.notes if not note.startswith(ROUTINE_NOTES)]


def cmd_ask(args) -> int:
    from memo_pipelines.apps.serve import reply_text

    settings = Settings.from_env()
    protocol, memory_spec = build_protocol(args, settings)
    result = protocol.ask(args.question)
    checked = hybrid_check(args, settings, protocol, result) if args.hybrid else None
    if args.json:
        print(json.dumps(result.to_json() | ({"hybrid": checked.to_json()} if checked else {}), indent=1))
        return 0
    if args.trace:
        print_trace(result, memory_spec)
    if degraded := degradations(result):
        more = f" (and {len(degraded) - 1} more; --trace shows them)" if len(degraded) > 1 else ""
        print(f"memo: degraded answer: {' '.join(degraded[0].split())}{more}", file=sys.stderr)
    if checked:
        print(checked.answer)
        if checked.evidence:
            e = checked.evidence
            print(f'  verified: {e.doc_id}, characters {e.start}-{e.end}: "{e.quote}"')
        else:
            print(f"  {checked.route}: no retrieved passage states it")
        return 0
    print(reply_text(result))
    return 0


def hybrid_check(args, settings: Settings, protocol, result):
    """The protocol's answer checked against the live corpus's passages (protocol/hybrid.py); the executive reads them."""
    from memo_pipelines.protocol.hybrid import HybridConfig, HybridRoute
    from memo_pipelines.protocol.passages import PassageIndex, live_passages

    index = PassageIndex(live_passages(settings.store()))
    reader = protocol.executive or protocol.memory
    return HybridRoute(reader, index, HybridConfig(unsupported=args.unsupported, unverified_answer=args.unverified_answer)).answer([args.question], [result.answer])[0]


def hybrid_verifier(args, settings: Settings):
    """For memo serve --hybrid: each answer checked against the live corpus, whose index follows uploads and deletions."""
    from memo_pipelines.protocol.hybrid import HybridConfig, HybridRoute, verified_answer
    from memo_pipelines.protocol.passages import LivePassages

    live, config = LivePassages(settings.store(), refresh_s=args.follow_interval), HybridConfig(unsupported=args.unsupported, unverified_answer=args.unverified_answer)

    def verify(question: str, answer, reader):
        return verified_answer(answer, HybridRoute(reader, live.index(), config).answer([question], [answer.answer])[0])

    return verify


def memory_follower(args, memory_spec) -> str | None:
    """How `memo serve` follows the promoted pointer: the name of a loader in apps.deployments, or None (a fixed memory)."""
    if args.memory_launch:
        return "launch"
    if args.memory_lora:
        if memory_spec.backend != "openai" or not memory_spec.base_url:
            raise SystemExit("--memory-lora needs --memory openai and --memory-base-url of the server that loads the adapters")
        return "lora"
    return "local" if follows_registry(args, memory_spec) else None


def _interrupt(*_):
    raise KeyboardInterrupt


def cmd_serve(args) -> int:
    import signal

    from memo_pipelines.apps.batching import Tally, shared_model
    from memo_pipelines.apps.deployments import LOADERS
    from memo_pipelines.apps.follow import Deployment, ModelSwitch, PointerWatcher
    from memo_pipelines.apps.serve import ProtocolServer, ServeLimits, is_loopback
    from memo_pipelines.storage.layout import PROMOTED_POINTER

    api_key = os.environ.get(args.api_key_env) or None  # never printed
    if api_key is None and not is_loopback(args.host):
        raise SystemExit(f"memo serve: binding to {args.host} needs an API key: set {args.api_key_env} (clients send it as "
                         "'Authorization: Bearer <key>'), or bind to 127.0.0.1")
    settings = Settings.from_env()
    stats, window_s = Tally(), args.batch_window_ms / 1000
    memory_spec = _llm_spec("MEMORY", args.memory, args.memory_model, args.memory_base_url)
    follower, watcher = memory_follower(args, memory_spec), None
    if follower:
        registry = settings.registry()
        pointer, etag = registry.store.get_json_versioned(PROMOTED_POINTER, default={"model_id": None})
        if not pointer.get("model_id"):
            raise SystemExit("no promoted memory model yet: run `make demo` or wait for the pipeline to promote one")
        load = LOADERS[follower](registry, stats, window_s=window_s, memory_spec=memory_spec, command=args.memory_launch,
                                 ready_timeout_s=args.memory_ready_timeout, lora_path=args.lora_path)
        switch = ModelSwitch(load(pointer))
        if args.follow:
            watcher = PointerWatcher(registry.store, switch, load, etag, args.follow_interval)
    else:
        memory, memory_spec, sources = build_memory(args, settings)
        label = f"{memory_spec.backend}:{memory_spec.model}"
        switch = ModelSwitch(Deployment(None, None, "fixed memory: not following the registry", shared_model(memory, "memory", stats, window_s),
                                        sources, memory_label=label))
    # SIGTERM ends the server like Ctrl-C does, so memory servers it launched are stopped with it
    signal.signal(signal.SIGTERM, _interrupt)
    server = None
    try:
        executive, config = build_executive(args, settings, concurrency=args.max_active)
        limits = ServeLimits(args.max_active, args.max_waiting, args.max_body_bytes, args.body_timeout)
        server = ProtocolServer(switch, shared_model(executive, "executive", stats, window_s) if executive else None, config, args.model_name,
                                args.host, args.port, limits, watcher, stats, api_key=api_key, verify=hybrid_verifier(args, settings) if args.hybrid else None)
        serving = switch.current
        following = f"following the promoted pointer every {args.follow_interval:g} s ({follower})" if watcher else "not following the registry"
        key = f"API key required (from ${args.api_key_env})" if api_key else "no API key"
        print(f"serving model {args.model_name!r} at {server.base_url} (memory {serving.memory_label}, mode {config.mode}, {following}, {key}); "
              "Ctrl-C stops", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if watcher:
            watcher.stop()
        if server:
            server.close()
        switch.close_all()
    return 0


def add_protocol_flags(parser) -> None:
    """Backends and budgets of the protocol, shared by `ask` and `serve`."""
    from memo_pipelines.protocol import MODES, ProtocolConfig as defaults

    parser.add_argument("--base", action="store_true", help="use the untrained base model as memory (for comparison)")
    parser.add_argument("--executive", default="", help="executive backend: local (default) or openai")
    parser.add_argument("--executive-model", default="", help="executive model: a directory (local) or a served model name")
    parser.add_argument("--executive-base-url", default="", help="OpenAI-compatible base URL of the executive")
    parser.add_argument("--memory", default="", help="memory backend: local (the promoted model, default) or openai")
    parser.add_argument("--memory-model", default="", help="memory model: a directory (local) or a served model name")
    parser.add_argument("--memory-base-url", default="", help="OpenAI-compatible base URL of the memory (e.g. vLLM serving it)")
    parser.add_argument("--mode", default=None, choices=MODES,
                        help="staged (three stages), single (one turn) or direct (memory only); default: staged, or direct with the embedded executive")
    parser.add_argument("--hybrid", action="store_true",
                        help="check the answer against passages retrieved from the live corpus and quote the one that supports it")
    parser.add_argument("--unsupported", choices=("mark", "decline"), default="mark",
                        help="--hybrid: an answer no passage supports is marked unverified, or declined")
    parser.add_argument("--unverified-answer", choices=("passages", "memory"), default="passages",
                        help="--hybrid --unsupported mark: when no passage supports either, keep the answer read from the passages or the memory's")
    parser.add_argument("--paraphrases", type=int, default=defaults.paraphrases, help="ask each sub-question k ways and take the majority answer")
    parser.add_argument("--narrow-turns", type=int, default=defaults.narrow_turns, help="turn budget of the narrowing stage")
    parser.add_argument("--gather-turns", type=int, default=defaults.gather_turns, help="turn budget of the gathering stage")
    parser.add_argument("--call-timeout", type=float, default=defaults.call_timeout_s, help="seconds allowed to one executive or memory call")
    parser.add_argument("--deadline", type=float, default=defaults.deadline_s, help="seconds allowed to one question, all calls together")


def upload_keys(args_paths: list[str], prefix: str) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """({key: file}, {key: files} of keys two or more files would land on). A folder's files are keyed by their path
    inside it (a/report.txt and b/report.txt stay two documents); a file named on its own by its name."""
    by_key: dict[str, list[Path]] = {}
    for arg in args_paths:
        root = Path(arg)
        files = [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*")) if p.is_file()] if root.is_dir() else [(root, root.name)]
        for path, name in files:
            by_key.setdefault(f"{prefix.rstrip('/')}/{name}", []).append(path)
    clashes = {key: paths for key, paths in by_key.items() if len(set(paths)) > 1}
    return {key: paths[0] for key, paths in by_key.items()}, clashes


UPLOADER_VARIABLES = ("MEMO_UPLOAD_ACCESS_KEY_ID", "MEMO_UPLOAD_SECRET_ACCESS_KEY")


def uploader_store(settings: Settings):
    """The bucket as the uploader sees it: MEMO_UPLOAD_ACCESS_KEY_ID/MEMO_UPLOAD_SECRET_ACCESS_KEY, else the local
    demo's uploader-credentials.json, else the pipeline's own credential. No bucket check: the uploader may not make one."""
    from memo_pipelines.storage.objectstore import ObjectStore, make_s3_client
    from memo_pipelines.storage.seaweed import UPLOADER_CREDENTIALS_FILE

    access, secret = (os.environ.get(name) for name in UPLOADER_VARIABLES)
    local = settings.home / UPLOADER_CREDENTIALS_FILE
    if not access and local.exists():
        stored = json.loads(local.read_text())
        access, secret = stored["AWS_ACCESS_KEY_ID"], stored["AWS_SECRET_ACCESS_KEY"]
    if not access:
        access, secret = settings.access_key_id, settings.secret_access_key
    return ObjectStore(make_s3_client(settings.endpoint_url, access, secret), settings.bucket)


def _etag_if_readable(store, key: str) -> str | None:
    """The key's ETag; None when it is absent, or when the uploader may not tell (S3 answers 403 for a missing key to a
    credential without s3:ListBucket): the put decides then."""
    try:
        return store.head_etag(key)
    except StoreError as error:
        if error.code in ("403", "AccessDenied", "Forbidden"):
            return None
        raise


def cmd_upload(args) -> int:
    import hashlib

    from tqdm import tqdm

    missing = [arg for arg in args.paths if not Path(arg).exists()]
    if missing:
        print(f"memo upload: no such file or folder: {', '.join(missing)}; nothing uploaded", file=sys.stderr)
        return 2
    keys, clashes = upload_keys(args.paths, args.prefix)
    if clashes:
        for key, paths in sorted(clashes.items()):
            print(f"memo upload: {', '.join(map(str, paths))} would all land on {key}", file=sys.stderr)
        print(f"memo upload: {len(clashes)} key(s) named twice in one upload; nothing uploaded (upload them separately or rename)", file=sys.stderr)
        return 2
    store = uploader_store(Settings.from_env())
    rewritten, unchanged = [], 0
    for key, path in tqdm(sorted(keys.items()), desc="uploading", unit="file", disable=None):
        data = path.read_bytes()
        try:
            before = _etag_if_readable(store, key)
            if before == hashlib.md5(data).hexdigest():  # the same bytes are already there: no new version, nothing to say
                unchanged += 1
                continue
            store.put_bytes(key, data)
        except StoreError as error:
            print(f"memo upload: {error} (an uploader credential may write only {LANDING_PREFIX})", file=sys.stderr)
            return 1
        if before is not None:
            rewritten.append(key)
        tqdm.write(f"{'rewrote' if before is not None else 'uploaded'} {path} -> s3://{store.bucket}/{key}")
    print(f"{len(keys) - unchanged - len(rewritten)} new, {len(rewritten)} rewritten, {unchanged} unchanged")
    if rewritten:
        shown = ", ".join(rewritten[:5]) + (f" and {len(rewritten) - 5} more" if len(rewritten) > 5 else "")
        print(f"rewrote {len(rewritten)} existing key(s), their earlier text is replaced: {shown}")
    return 0


def cmd_status(args) -> int:
    from tqdm import tqdm

    from memo_pipelines.apps.status import collect, render

    settings = Settings.from_env()
    dagster_home = os.environ.get("DAGSTER_HOME") if Path(os.environ.get("DAGSTER_HOME", "/nonexistent"), "dagster.yaml").exists() else None
    # reading every version's records takes a while on a long history: a bar on a terminal, nothing in a log
    progress = lambda versions: tqdm(versions, desc="reading versions", unit="version", leave=False, disable=None)  # noqa: E731
    pointer, versions = collect(settings.store(), settings.registry(), dagster_home, progress)
    if args.json:
        print(json.dumps({"promoted": pointer, "versions": [dataclasses.asdict(v) for v in versions]}, indent=1))
        return 0
    print(f"bucket s3://{settings.bucket} at {settings.endpoint_url or 'AWS'}")
    print(render(pointer, versions, quarantine_limit=10**9 if args.all else 20))
    return 0


def cmd_wait(args) -> int:
    """Wait until `--versions` versions have an evaluation and the promoted model is one of theirs, with a progress bar.
    Returns 1 at once when one of them failed its run (its failure record) or its gates, or its promotion was refused."""
    from tqdm import tqdm

    from memo_pipelines.apps.status import STAGES, version_outcome, version_stages
    from memo_pipelines.storage.layout import FAILURE, PROMOTION

    settings = Settings.from_env()
    store, registry = settings.store(), settings.registry()
    deadline = time.time() + args.timeout
    total = args.versions * len(STAGES)
    said = {"failed": "failed", "rejected": "failed its gates", "refused": "passed its gates but its promotion was refused"}
    with tqdm(total=total, desc="pipeline", unit="stage") as bar:
        while time.time() < deadline:
            states = version_stages(store, STAGES + [FAILURE, PROMOTION])
            done = sum(len(set(v) & set(STAGES)) for _, v in sorted(states.items())[: args.versions])
            if min(done, total) > bar.n:  # redraw only on progress, so a log file gets one line per stage
                bar.update(min(done, total) - bar.n)
            versions = sorted(states)[: args.versions]
            finished = len([v for v in versions if "evaluation.json" in states[v]]) == args.versions
            last = versions[-1] if len(versions) == args.versions else None
            for version in [v for v in versions if FAILURE in states[v] or v == last and (finished or PROMOTION in states[v])]:
                outcome = version_outcome(store, registry, version)
                # a failed run stops the wait whichever version it was; the last version's gates and promotion decide it
                if outcome is None or outcome[0] != "failed" and (version != last or outcome[0] == "promoted" and not finished):
                    continue
                bar.close()
                promoted = registry.promoted_id() or ""
                if outcome[0] == "promoted":
                    print(f"promoted memory model: {promoted}")
                    return 0
                print(f"version {version} {said[outcome[0]]}: {'; '.join(outcome[1])}; promoted stays {promoted}")
                if outcome[0] == "failed":
                    print("`memo status` shows its error, how to retry it, and where its documents go")
                return 1
            time.sleep(3)
    print(f"timed out after {args.timeout} s; see the Dagster UI for the run")
    return 1


def cmd_rollback(args) -> int:
    print(f"promoted memory model: {Settings.from_env().registry().rollback(args.reason)}")
    return 0


def cmd_prune(args) -> int:
    pruned = Settings.from_env().registry().prune_candidates(args.keep)
    print(f"pruned {len(pruned)} never-promoted candidates: {', '.join(pruned) or '-'}")
    return 0


def cmd_evals(args) -> int:
    """Put evaluation sets (JSONL of {question, answer}) under evals/ with the pipeline's credential: every candidate
    is scored on them beside the generated probes. A set with a bad line is refused whole, naming the line."""
    from memo_pipelines.evaluation.user_evals import parse_eval_set
    from memo_pipelines.storage.layout import USER_EVALS_PREFIX

    keys, clashes = upload_keys(args.paths, USER_EVALS_PREFIX)
    sets = {key: path for key, path in keys.items() if key.endswith(".jsonl")}
    if clashes or not sets:
        print(f"memo evals: {'two files land on one key' if clashes else 'no .jsonl set given'}; nothing uploaded", file=sys.stderr)
        return 2
    for key, path in sorted(sets.items()):
        try:
            rows = parse_eval_set(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as error:
            print(f"memo evals: {path}: {error}; nothing uploaded", file=sys.stderr)
            return 2
        sets[key] = (path, len(rows))
    store = Settings.from_env().store()
    for key, (path, count) in sorted(sets.items()):
        store.put_bytes(key, path.read_bytes())
        print(f"{count} questions: {path} -> s3://{store.bucket}/{key}")
    return 0


def cmd_setup(args) -> int:
    from memo_pipelines.llm.embedded import embedded_model_dir

    settings = Settings.from_env()
    local_credentials(settings.home)
    print(f"embedded model: {embedded_model_dir(settings.work_dir / 'embedded')}")
    return 0


SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY",)


def cmd_env(args) -> int:
    """Shell exports for the local demo's services. The secret key's value is not printed unless --show-secrets asks
    for it: its export reads it from the credentials file when the shell evaluates it, so `eval "$(memo env)"` works."""
    import shlex

    settings = Settings.from_env()
    credentials = local_credentials(settings.home)
    values = {**credentials, "MEMO_HOME": str(settings.home), "MEMO_S3_ENDPOINT": settings.endpoint_url or "",
              "MEMO_BUCKET": settings.bucket, "MEMO_WORK_DIR": str(settings.work_dir)}
    read_credential = "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])"
    for name, value in values.items():
        if name in SECRET_VARIABLES and not args.show_secrets:
            reader = " ".join(shlex.quote(part) for part in (sys.executable, "-c", read_credential, str(settings.home / "credentials.json"), name))
            print(f'export {name}="$({reader})"  # value masked; `memo env --show-secrets` prints it')
        else:
            print(f"export {name}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer a question through the executive-memory protocol")
    ask.add_argument("question")
    ask.add_argument("--trace", action="store_true", help="print every sub-question and memory answer")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_protocol_flags(ask)
    ask.set_defaults(func=cmd_ask)

    serve = sub.add_parser("serve", help="an OpenAI-compatible chat endpoint answering through the protocol")
    serve.add_argument("--host", default="127.0.0.1", help="bind address; anything but loopback needs an API key")
    serve.add_argument("--api-key-env", default="MEMO_API_KEY", metavar="VARIABLE",
                       help="environment variable holding the API key clients must send as 'Authorization: Bearer <key>' (unset: no key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model-name", default="memo", help="the model id clients ask for")
    serve.add_argument("--no-follow", dest="follow", action="store_false", help="keep the memory loaded at start; ignore later promotions and rollbacks")
    serve.add_argument("--follow-interval", type=float, default=10.0, help="seconds between polls of the promoted pointer's ETag")
    serve.add_argument("--max-active", type=int, default=8, help="requests answered at once")
    serve.add_argument("--max-waiting", type=int, default=16, help="requests queued behind them; past that, 429 with Retry-After")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body; larger ones get 413")
    serve.add_argument("--body-timeout", type=float, default=30.0, help="seconds a request body has to arrive; slower ones get 408")
    serve.add_argument("--memory-launch", default="", metavar="COMMAND",
                       help="serve each promoted memory with this command, blue/green: {model_dir}, {model_id}, {port} are filled in, e.g. "
                            "'vllm serve {model_dir} --served-model-name {model_id} --host 127.0.0.1 --port {port} --gpu-memory-utilization 0.45'")
    serve.add_argument("--memory-ready-timeout", type=float, default=900.0, help="seconds a launched memory server has to list its model")
    serve.add_argument("--memory-lora", action="store_true",
                       help="load each promoted memory as a LoRA adapter on --memory-base-url (vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)")
    serve.add_argument("--lora-path", default="{model_dir}", help="where that server reads an adapter: {model_dir} (this machine's copy) or a path with {model_id}")
    serve.add_argument("--batch-window-ms", type=float, default=5.0, help="how long an in-process model waits for concurrent requests' calls to share a batch")
    add_protocol_flags(serve)
    serve.set_defaults(func=cmd_serve)

    upload = sub.add_parser("upload", help="put documents into the landing prefix of the bucket")
    upload.add_argument("paths", nargs="+")
    upload.add_argument("--prefix", default=LANDING_PREFIX)
    upload.set_defaults(func=cmd_upload)

    status = sub.add_parser("status", help="corpus versions and their state, the promoted model, quarantine, last evaluations")
    status.add_argument("--all", action="store_true", help="list every quarantined document, not only the last 20")
    status.add_argument("--json", action="store_true", help="print everything as JSON")
    status.set_defaults(func=cmd_status)

    wait = sub.add_parser("wait", help="wait for the pipeline to promote a model for the first N versions")
    wait.add_argument("--versions", type=int, default=1)
    wait.add_argument("--timeout", type=float, default=3600)
    wait.set_defaults(func=cmd_wait)

    rollback = sub.add_parser("rollback", help="point the registry back at the previously promoted model")
    rollback.add_argument("--reason", default="manual rollback")
    rollback.set_defaults(func=cmd_rollback)

    prune = sub.add_parser("prune", help="delete never-promoted candidate models, keeping the newest few")
    prune.add_argument("--keep", type=int, default=2)
    prune.set_defaults(func=cmd_prune)

    evals = sub.add_parser("evals", help="put evaluation sets (JSONL of question and answer) under evals/: every candidate is scored on them")
    evals.add_argument("paths", nargs="+")
    evals.set_defaults(func=cmd_evals)

    sub.add_parser("setup", help="create local credentials and convert the embedded model (once)").set_defaults(func=cmd_setup)
    env = sub.add_parser("env", help="print shell exports for the local services (the secret key masked)")
    env.add_argument("--show-secrets", action="store_true", help="print the S3 secret key itself (for `eval \"$(memo env --show-secrets)\"`)")
    env.set_defaults(func=cmd_env)

    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
