"""Translation quality on real faces: train on the UTKFace sample with a preset, then measure the
held-out split. Arms (flag overrides) and seeds make an A/B. Prints JSON.

    python -m benchmarks.quality --task=age                         # utkface_age_cpu, seed 0
    python -m benchmarks.quality --task=age --seeds=0,1 \\
        --arm=base --arm=id0.1:lambda_identity=0.1 --arm=f32:gen_filters=32,steps_per_epoch=1500
    python -m benchmarks.quality --task=gender                      # utkface_gender_cpu
    python -m benchmarks.quality --task=age --evaluate=runs/age     # measure an existing run only
    python -m benchmarks.quality --untrained                        # the checkerboard before training

Each run is `train.py --preset=<preset> --data_dir=<sample> --seed=<s> <arm's flags>` in a child
process, timed (wall, and CPU seconds of its process tree), then `tfcyclegan-evaluate` on its
test split (no Inception: --inception_weights=none) with the project's oracle: trained once per
task on the sample's TRAIN split (`tfcyclegan-evaluate train_oracle` defaults), so it has never
seen a test face, and kept in <work>/oracle_<task>.

Per run: per direction the flip rate (translated faces the oracle calls the target domain) beside
the untranslated baseline and the oracle's rate on real target faces, relative = flip / that
ceiling (the aim: >= 0.90), per race for the age and gender tasks; cycle and identity L1 on
held-out faces (aim: cycle <= 0.10); the artefact ratio (checkerboard power, translated / real
target; aim <= 1.10) and the sharpness ratio; the evaluation folder (index.html, panels,
spectra.png). Per arm: the mean, min and max over seeds. --untrained: the artefact figures of
untrained full-size generators (three seeds per upsampling mode) on the held-out 20s, against the
real 50s: where the pattern comes from before any training. The panels show UTKFace faces: they stay
in <work>, outside the repository (the data's licence is non-commercial research use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "utkface_sample"
AIMS = {"flip_relative_min": 0.90, "cycle_l1_max": 0.10, "artefact_ratio_max": 1.10}
HEADLINE = ("flip", "relative", "untranslated", "ceiling", "cycle_l1", "identity_l1", "artefact_ratio", "sharpness_ratio")


def parse_arm(text: str) -> tuple[str, dict[str, str]]:
    """'name:flag=value,flag=value' (or just 'name') -> (name, {flag: value})."""
    name, _, rest = text.partition(":")
    flags = {}
    # A comma starts a new override only before "flag=": --schedule=48:1,64:1 keeps its comma.
    for part in filter(None, re.split(r",(?=\s*-*[A-Za-z_]\w*=)", rest)):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--arm={text!r}: each override is flag=value (a train.py flag), e.g. lambda_identity=0.1")
        flags[key.strip().lstrip("-")] = value.strip()
    if not name:
        raise SystemExit(f"--arm={text!r}: give the arm a name first, e.g. --arm=id0.1:lambda_identity=0.1")
    return name, flags


def run_timed(cmd: list[str], log_path: Path) -> dict:
    """Runs cmd to completion with its output in log_path; wall and CPU seconds (the process tree)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status), "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def ensure_oracle(task: str, data_dir: Path, work: Path, oracle: str | None) -> str:
    if oracle:
        return oracle
    path = work / f"oracle_{task}"
    if not (path / "oracle.json").is_file():
        print(f"training the {task} oracle into {path}", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "tfcyclegan.cli.evaluate", "train_oracle", f"--task={task}",
               f"--data_dir={data_dir}", f"--output={path}"]
        result = run_timed(cmd, work / f"oracle_{task}.log")
        if result["returncode"]:
            raise SystemExit(f"oracle training failed; see {work / f'oracle_{task}.log'}")
    return str(path)


def figures(report: dict) -> dict:
    """The headline figures of an evaluation report, per direction."""
    out = {}
    for name, d in report["directions"].items():
        flip = d["flip_rate"] or {}
        row = {
            "flip": flip.get("translated"), "relative": flip.get("relative"), "untranslated": flip.get("untranslated"),
            "ceiling": flip.get("oracle_on_real_target"), "cycle_l1": d["cycle_l1"], "identity_l1": d["identity_l1"],
            "artefact_ratio": d["artefacts"]["artefact_ratio"], "sharpness_ratio": d["artefacts"]["sharpness_ratio"],
            "test_images": d["source_count"],
        }
        for key in ("by_race", "by_gender"):
            if flip.get(key):
                row[key] = {g: {"count": v["count"], "flip": v["translated"], "untranslated": v["untranslated"],
                                "ceiling": v["oracle_on_real_target"]} for g, v in flip[key].items()}
        out[name] = row
    return out


def aims_met(result: dict) -> dict:
    out = {}
    for name, row in result.items():
        out[name] = {
            "flip": row["relative"] is not None and row["relative"] >= AIMS["flip_relative_min"],
            "cycle_l1": row["cycle_l1"] <= AIMS["cycle_l1_max"],
            "artefacts": row["artefact_ratio"] <= AIMS["artefact_ratio_max"],
        }
    return out


def evaluate(workdir: Path, oracle: str, data_dir: Path, output: Path) -> dict:
    from tfcyclegan.eval.evaluate import evaluate_workdir

    report = evaluate_workdir(str(workdir), str(output), data_dir=str(data_dir), inception_weights="none",
                              oracle_dir=oracle, progress=False)
    return {"step": report["checkpoint"]["global_step"], "directions": figures(report), "report": str(output / "index.html")}


def summarise(runs: list[dict]) -> dict:
    """Mean, min and max over an arm's seeds of each headline figure, per direction."""
    out = {}
    for direction in ("a2b", "b2a"):
        rows = [r["result"]["directions"][direction] for r in runs if "result" in r]
        out[direction] = {}
        for key in HEADLINE:
            values = [row[key] for row in rows if row.get(key) is not None]
            if values:
                out[direction][key] = {"mean": round(sum(values) / len(values), 4), "min": round(min(values), 4),
                                       "max": round(max(values), 4)}
    done = [r for r in runs if "result" in r]
    if done:
        out["wall_s"] = round(sum(r["wall_s"] for r in done) / len(done), 1)
        out["cpu_s"] = round(sum(r["cpu_s"] for r in done) / len(done), 1)
    return out


def untrained(data_dir: Path, task: str, size: int = 64, seeds: int = 3) -> dict:
    """Artefact figures of untrained generators, per upsampling mode: the pattern's source."""
    import keras

    from tfcyclegan.config import DataConfig, ModelConfig, UPSAMPLES
    from tfcyclegan.eval.artefacts import artefact_figures
    from tfcyclegan.eval.evaluate import load_splits
    from tfcyclegan.model.networks import build_generator

    data_cfg = DataConfig(dataset="utkface", data_dir=str(data_dir), task=task)
    test_a, test_b = load_splits(data_cfg, splits=["test"], size=size, count=None, cache_dir=None)[0]["test"]
    out = {}
    for mode in UPSAMPLES:
        rows = []
        for seed in range(seeds):
            keras.utils.set_random_seed(seed)
            generator = build_generator(ModelConfig(upsample=mode))
            fake = generator.predict(test_a, batch_size=8, verbose=0)
            figures = artefact_figures(fake, test_b)
            rows.append({k: round(figures[k], 4) for k in ("artefact_ratio", "fixed_pattern_ratio", "sharpness_ratio")})
        out[mode] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="age", choices=("age", "gender", "ethnicity"))
    parser.add_argument("--preset", default=None, help="Default: utkface_<task>_cpu.")
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds, e.g. 0,1.")
    parser.add_argument("--arm", action="append", default=None,
                        help="name[:flag=value,...]: train.py flags over the preset; repeat for an A/B. Default: base.")
    parser.add_argument("--flags", default="", help="flag=value,... given to every arm (e.g. steps_per_epoch=50 for a quick look).")
    parser.add_argument("--work", default=str(REPO / "runs" / "quality"), help="Runs, evaluations and the oracle go here.")
    parser.add_argument("--oracle", default=None, help="An oracle folder (default: <work>/oracle_<task>, trained if missing).")
    parser.add_argument("--evaluate", default=None, help="Only evaluate this existing workdir.")
    parser.add_argument("--output", default=None, help="Also write the JSON here.")
    parser.add_argument("--untrained", action="store_true", help="Only measure untrained generators' artefacts.")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise SystemExit(f"--data_dir={data_dir}: no such folder (the UTKFace sample, or your UTKFace copy).")
    if args.untrained:
        print(json.dumps({"benchmark": "quality.untrained", "machine": machine_info(), "task": args.task,
                          "untrained": untrained(data_dir, args.task)}, indent=1))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    preset = args.preset or f"utkface_{args.task}_cpu"
    out = {"benchmark": "quality", "machine": machine_info(), "task": args.task, "preset": preset,
           "data_dir": str(data_dir), "aims": AIMS}
    oracle = ensure_oracle(args.task, data_dir, work, args.oracle)
    from tfcyclegan.eval.oracle import load_oracle

    meta = load_oracle(oracle).meta
    out["oracle"] = {"path": oracle, **{k: meta.get(k) for k in ("test_accuracy_a", "test_accuracy_b", "balanced_test_accuracy", "counts")}}

    if args.evaluate:
        workdir = Path(args.evaluate)
        result = evaluate(workdir, oracle, data_dir, work / f"{workdir.name}_report")
        out["runs"] = [{"workdir": str(workdir), "result": result, "aims_met": aims_met(result["directions"])}]
        return _emit(out, args.output, 0)

    _, common = parse_arm("common:" + args.flags)
    arms = [parse_arm(text) for text in (args.arm or ["base"])]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out["arms"] = {}
    for name, flags in arms:
        runs = []
        for seed in seeds:
            workdir = work / f"{args.task}_{name}_s{seed}"
            cmd = [sys.executable, "train.py", f"--preset={preset}", f"--data_dir={data_dir}", f"--workdir={workdir}",
                   f"--seed={seed}", "--keep_checkpoints=1"]
            cmd += [f"--{k}={v}" for k, v in {**common, **flags}.items()]
            print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            run = {"seed": seed, "workdir": str(workdir), "command": " ".join(cmd[1:]),
                   **run_timed(cmd, work / f"{args.task}_{name}_s{seed}.log")}
            if run["returncode"] == 0:
                run["result"] = evaluate(workdir, oracle, data_dir, work / f"{args.task}_{name}_s{seed}_report")
                run["aims_met"] = aims_met(run["result"]["directions"])
            else:
                run["error"] = f"train.py exited {run['returncode']}; see {work / f'{args.task}_{name}_s{seed}.log'}"
            print(json.dumps({k: v for k, v in run.items() if k != "command"}), file=sys.stderr, flush=True)
            runs.append(run)
        out["arms"][name] = {"flags": flags, "runs": runs, "summary": summarise(runs)}
    return _emit(out, args.output, 0 if all("result" in r for arm in out["arms"].values() for r in arm["runs"]) else 1)


def _emit(out: dict, output: str | None, status: int) -> int:
    text = json.dumps(out, indent=1)
    if output:
        Path(output).write_text(text + "\n")
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
