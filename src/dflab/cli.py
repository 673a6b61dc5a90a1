"""The ``dflab`` command. Each subcommand lives beside the code it drives, in a module that defines
``add_arguments(parser)`` and ``run(args) -> int``; this file only lists them (imported lazily, so
``dflab --help`` is fast and a missing optional extra only affects its own subcommand).

Exit codes are one contract for every command (docs/guide/exit-codes.md): 0 success, 2 bad arguments, an invalid
configuration, a missing input or an unusable checkpoint (:class:`~dflab.errors.CheckpointError`,
:class:`~dflab.errors.ConfigError`, ``FileNotFoundError`` — caught here, so no command prints a traceback for
them), 70 for an unexpected exception (a bug: the traceback is printed; never 1, which ``dflab scan`` uses for
"judged fake"), and the command-specific codes listed in docs/guide/exit-codes.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dflab.scan.demo", "run the main job on the embedded default input"),
    "prepare": ("dflab.data.prepare", "decode, detect, align, crop faces of a dataset and write a manifest"),
    "synth": ("dflab.synthesis.cli", "write synthesised fakes, masks and params, or a contact sheet"),
    "train": ("dflab.train.cli", "train a detector from a recipe"),
    "list": ("dflab.listing", "list detectors, recipes, datasets, synthesizers, protocols"),
    "eval": ("dflab.eval.cli", "evaluate a checkpoint with a protocol"),
    "robustness": ("dflab.eval.robustness_cli", "sweep degradations and plot AUC against each"),
    "compare": ("dflab.eval.compare", "put several runs' results in one table"),
    "scan": ("dflab.scan.cli", "score faces in images, videos and folders"),
    "serve": ("dflab.serve.cli", "web UI and JSON API over the scanner"),
}


#: commands whose numpy work is on small arrays: OpenBLAS's thread pool (one thread per core, started when numpy is
#: imported) only spins, ~0.09 CPU s per process measured here; one BLAS thread for them
SINGLE_THREAD_BLAS = {"prepare"}
#: commands that allocate and free the same large buffers over and over (a decoded frame, its grey copy, its downscaled
#: copies, per sampled frame, in every worker): glibc's malloc returns such memory to the kernel on every free and
#: takes it back as fresh, zeroed pages, ~1,000 page faults per 720p frame. With fixed thresholds (:func:`_tune_malloc`)
#: ``dflab prepare`` on the three reference videos of ``bench/bench_ratios.py`` takes 0.10–0.15 CPU s less kernel time
#: (145,000 → 100,000 page faults), the same outputs
STEADY_MALLOC = {"prepare"}
#: glibc ``mallopt`` parameters: blocks up to this size come from the heap, not from a fresh ``mmap`` each (a 4K RGB
#: frame is 25 MB; glibc's own default grows to at most 32 MB, but only after the first free of each larger size)
MMAP_THRESHOLD = 32 << 20
#: free memory kept at the top of the heap before it is returned to the kernel (glibc: twice the current mmap
#: threshold, so about one frame, which one frame's allocations and frees then cross every time; 32 and 128 MB gave
#: the same page faults on the reference videos, 8 MB a quarter more)
TRIM_THRESHOLD = 64 << 20
#: subcommand -> a light module whose ``preload()`` starts a slow model load in a child process *before* the
#: command's module (and numpy, OpenCV, PyAV) is imported: dflab prepare's 68-point model (0.5 s of one core) loads on
#: the core those ~0.25 s of imports leave idle (dflab.data.landmark_server)
PRELOAD = {"prepare": "dflab.data.landmark_server"}

EXIT_CODES_DOC = "docs/guide/exit-codes.md"
EXIT_USAGE = 2  # bad arguments, configuration, missing input or unusable checkpoint (argparse uses 2 as well)
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): an unexpected exception, distinct from every command's own codes
EPILOG = (
    f"exit codes: 0 ok, 2 bad arguments / config / missing input / unusable checkpoint, 70 internal error; "
    f"per-command codes (scan: 1 fake, 4 unscannable file) in {EXIT_CODES_DOC}"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dflab", description="deepfake detection framework", epilog=EPILOG)
    from dflab import __version__

    parser.add_argument("--version", action="version", version=f"dflab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _tune_malloc() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process and the ones it forks (:data:`STEADY_MALLOC`);
    ``False`` where the C library has no ``mallopt`` (macOS, musl) and nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv or ["--help"])
        return 2
    from dflab.errors import CheckpointError, ConfigError

    name, rest = argv[0], argv[1:]
    if name in SINGLE_THREAD_BLAS and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read once, when numpy loads OpenBLAS
    if name in STEADY_MALLOC:
        _tune_malloc()  # before the preload's fork, so that every process of the command inherits it
    if name in PRELOAD and not {"-h", "--help"} & set(rest):
        importlib.import_module(PRELOAD[name]).preload()
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(
        prog=f"dflab {name}",
        description=COMMANDS[name][1],
        epilog=f"exit codes: see {EXIT_CODES_DOC} (2 = bad arguments, configuration, input or checkpoint; 70 = bug)",
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (CheckpointError, ConfigError, FileNotFoundError) as exc:  # one clear line and code 2, never a traceback
        print(f"dflab {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 - a bug: show it, but never exit 1, which `dflab scan` reserves for "fake"
        traceback.print_exc()
        print(f"dflab {name}: internal error (a bug; the traceback above says where)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
