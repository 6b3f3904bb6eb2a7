"""tfcyclegan-serve: a local web app to try trained models in a browser, and its HTTP API.

    tfcyclegan-serve --model=exports/age_a2b --model=exports/age_b2a
    tfcyclegan-serve --model=exports/age_a2b --model=exports/gender_a2b --port=8080   # chains: age, then gender
    tfcyclegan-serve --model=runs/age:b2a --workers=2 --queue=16

Then open http://127.0.0.1:8000/. Each --model is what tfcyclegan-translate takes: a SavedModel
folder, a TF Serving model folder (its highest version), a .tflite file, or a training workdir
(`runs/age:b2a` picks the direction). The models load once, at start. Every file the page needs
is served from the package: the app works with no internet. The API (POST /v1/translate,
GET /v1/models, GET /healthz) is described in docs/serving.md ("The web app").

The server has no authentication: it listens on 127.0.0.1 unless --host says otherwise.
Ctrl-C or SIGTERM stops it gracefully: the requests in progress are answered first. Exit status:
0 after Ctrl-C, 143 after SIGTERM (uvicorn ends by the signal, as service managers expect), 2
when nothing could start (bad flags, a model that cannot be loaded, an address in use).
"""

from __future__ import annotations

import socket
import sys
from typing import Sequence

from tfcyclegan.cli import run_command


def define_flags(flag_values=None):
    """Defines this command's flags on `flag_values` (absl's global FLAGS by default)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    flags.DEFINE_multi_string("model", None, "A model to serve (repeat the flag for more): SavedModel folder, TF Serving "
                              "model folder, .tflite file or workdir[:a2b|:b2a].", flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface; there is no authentication).",
                        flag_values=fv)
    flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port; the line printed at start names it).",
                         lower_bound=0, upper_bound=65535, flag_values=fv)
    flags.DEFINE_integer("workers", 1, "Translations that run at once (threads).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("queue", 8, "Requests that may wait for a worker; more get 503 with Retry-After.",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("max_upload_mb", 20, "Largest upload in MB; larger ones get 413 before they are read.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("upload_seconds", 60, "The longest a client may take to send its upload (it holds a place "
                         "in the queue meanwhile); slower ones get 408.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("max_side", 1024, "Images whose longer side is larger are translated as a copy this long.",
                         lower_bound=8, flag_values=fv)
    flags.DEFINE_float("max_megapixels", 25.0, "Images that would decode to more pixels are refused with 413 (a JPEG "
                       "counts after its reduced-scale decoding).", lower_bound=0.0001, flag_values=fv)
    flags.DEFINE_integer("threads", None, "CPU threads for TFLite models (default: all cores).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_enum("log_level", "info", ["debug", "info", "warning", "error"], "uvicorn's log level (info: one line "
                      "per request).", flag_values=fv)
    flags.mark_flags_as_required(["model"], flag_values=fv)
    return fv


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one). Raises OSError naming the reason."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        # Listening now, not when uvicorn starts: a client that connects as soon as the address
        # is printed waits in the backlog instead of being refused.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: Sequence[str], flag_values=None) -> int:
    """Serves until stopped; returns the exit status (0 stopped, 2 nothing could start)."""
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    FLAGS = flag_values if flag_values is not None else flags.FLAGS
    # Imported here so --help and flag errors answer without loading TensorFlow.
    import uvicorn

    from tfcyclegan.model.workdir import CheckpointError
    from tfcyclegan.serve import Limits, ModelRegistry, create_app
    from tfcyclegan.translate.models import ModelSpecError, load_translator

    limits = Limits(max_upload_bytes=FLAGS.max_upload_mb * 2**20, max_side=FLAGS.max_side,
                    max_pixels=max(64, round(FLAGS.max_megapixels * 1e6)), workers=FLAGS.workers, queue=FLAGS.queue,
                    upload_seconds=FLAGS.upload_seconds)
    try:
        sock = listen(FLAGS.host, FLAGS.port)
    except OSError as e:
        print(f"error: cannot listen on {FLAGS.host}:{FLAGS.port} ({e.strerror or e}).", file=sys.stderr)
        return 2
    try:
        registry = ModelRegistry([load_translator(spec, num_threads=FLAGS.threads) for spec in FLAGS.model])
    except (ModelSpecError, CheckpointError, ValueError) as e:
        sock.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    registry.warm_up()
    app = create_app(registry, limits)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    face_mode = app.state.face_mode
    print(f"tfcyclegan-serve: {len(registry)} model(s) ({', '.join(registry.names)}), faces mode "
          f"{'on request' if face_mode.available else 'unavailable'}, {limits.workers} worker(s) + {limits.queue} queued, "
          f"at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: listening on {host}: other machines can reach this server, and it has no authentication.",
              file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=FLAGS.log_level, timeout_keep_alive=5))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully, then raises Ctrl-C again: no traceback for it
        pass
    return 0


def run() -> None:
    """Console entry point: tfcyclegan-serve, python -m tfcyclegan.cli.serve."""
    run_command(define_flags, main, absl_warnings_only=True)


if __name__ == "__main__":
    run()
