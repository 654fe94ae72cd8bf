"""Run a recipe end to end: teacher → calibrate → convert → distill → evaluate → export.

A recipe is a YAML file (``pipelines/recipes/<name>.yaml`` or any path) validated against
:class:`~multispike.pipelines.recipe.RunConfig`; ``key.sub=value`` overrides change it from
the command line. Every stage writes into its own folder of one run directory::

    <run>/config.yaml             the resolved recipe
    <run>/teacher/                the trained ANN (recipes without pretrained weights)
    <run>/calibrate/qann/         the calibrated quantized ANN (multispike.pipelines.serialize)
    <run>/convert/{qann,snn}/     residual joins rewired; the SNN; report.json, report.txt
    <run>/distill/                Lightning logs and checkpoints; the fine-tuned {qann,snn}/
    <run>/evaluate/               the evaluation report: metrics.json, report.md, PNG plots
    <run>/export/                 model.onnx, model.nir
    <run>/metrics.json            the report's metrics with nested keys, as convert's
                                  report.json: ann.top1, qann.top1, snn.top1_at_t, ...
    <run>/summary.txt             ANN / QANN / SNN top-1, T, L, N, activity, energy ratio

A stage that finished writes ``done.json`` holding the hash of its config slice together
with those of the stages before it, so a restarted run skips it, and a changed slice reruns
that stage and every later one. A stage that fails raises :class:`StageError` naming it;
earlier stages' folders are left as they were (an interrupted distillation resumes from
its ``last.ckpt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from .recipe import RecipeError, RunConfig, load_recipe, recipe_names

__all__ = [
    "STAGES",
    "RecipeError",
    "RunConfig",
    "StageError",
    "load_recipe",
    "recipe_names",
    "run",
    "summary_table",
]


class StageError(RuntimeError):
    """A stage of a run failed; the message names the stage and the cause."""


# --------------------------------------------------------------------------- stages


class _Context:
    """What stages share: the config, the run directory, the data and the teacher (lazy)."""

    def __init__(self, config: RunConfig, root: Path, progress: bool) -> None:
        self.config, self.root, self.progress = config, root, progress
        self._data = None

    def dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def data(self):
        if self._data is None:
            from multispike.distill.data import from_spec

            self._data = from_spec(self.config.data.spec, **self.config.data.options)
            self._data.setup("fit")
        return self._data

    def model_kwargs(self) -> dict[str, int]:
        """``timm.create_model`` kwargs of the ANN (class and channel counts)."""
        model = self.config.model
        shape = getattr(self.data, "input_shape", None)
        classes = model.num_classes or getattr(self.data, "num_classes", None)
        chans = model.in_chans or (shape[0] if shape else None)
        return {k: v for k, v in (("num_classes", classes), ("in_chans", chans)) if v}

    def teacher(self):
        """The ANN: trained by the ``teacher`` stage, or the recipe's weights."""
        from multispike.distill.students import timm_model

        model = self.config.model
        if self.config.teacher.train:
            weights = str(self.dir("teacher") / "model.safetensors")
            return timm_model(model.name, checkpoint=weights, **self.model_kwargs())
        return timm_model(
            model.name, checkpoint=_resolve(model.checkpoint, "model.checkpoint"),
            pretrained=model.pretrained, **self.model_kwargs(),
        )  # fmt: skip

    def save(self, model, directory: Path) -> None:
        from multispike.pipelines.serialize import save

        save(model, directory, model_name=self.config.model.name, model_kwargs=self.model_kwargs())

    def final(self) -> str:
        """The stage whose ``qann``/``snn`` are the run's result."""
        return "distill" if self.config.distill.enabled else "convert"


def _resolve(path: str | None, key: str) -> str | None:
    """``shared:REL`` → the file ``REL`` of the shared data folder; other paths unchanged."""
    if path is None or not path.startswith("shared:"):
        return path
    from multispike.zoo.paths import ENV_VAR, shared_data_dir

    root = shared_data_dir()
    if root is None:
        raise FileNotFoundError(
            f"{key}: {path!r} needs the shared data folder: set {ENV_VAR} to it"
        )
    return str(root / path.removeprefix("shared:"))


def _student_frames(loader: Any, timesteps: int) -> Iterator[Any]:
    """Calibration inputs as the student sees them: event frames re-binned to its steps."""
    from multispike.convert.calibrate import batch_inputs
    from multispike.distill.frames import student_input

    for batch in loader:
        x = student_input(batch_inputs(batch), None, timesteps)
        yield x.flatten(0, 1) if x.dim() == 5 else x


def _load(directory: Path):
    from multispike.pipelines.serialize import load

    return load(directory)


def _stage_teacher(ctx: _Context) -> dict[str, Any]:
    """Train the ANN when the recipe asks for it; otherwise check that its weights load."""
    cfg, model = ctx.config, ctx.config.model
    if not cfg.teacher.train:
        ctx.teacher()
        return {"weights": model.checkpoint or ("pretrained" if model.pretrained else "random")}
    from multispike.distill.teacher import trained_teacher

    kwargs = ctx.model_kwargs()
    trained_teacher(
        model.name, ctx.data, str(ctx.dir("teacher") / "model.safetensors"),
        max_epochs=cfg.teacher.max_epochs, lr=cfg.teacher.lr, seed=cfg.seed,
        num_classes=kwargs.get("num_classes"), in_chans=kwargs.get("in_chans"),
    )  # fmt: skip
    return {"weights": "teacher/model.safetensors"}


def _stage_calibrate(ctx: _Context) -> dict[str, Any]:
    """ANN → QANN, thresholds from training images."""
    from multispike.convert import calibrate, quantizers

    c = ctx.config.calibrate
    loader = ctx.data.calibration_dataloader(num_images=c.images)
    frames = list(_student_frames(loader, ctx.config.convert.timesteps))
    qann = calibrate(
        ctx.teacher(), frames, c.levels, per_channel=c.per_channel, method=c.method,
        percentile=c.percentile, progress=ctx.progress,
    )  # fmt: skip
    ctx.save(qann, ctx.dir("calibrate") / "qann")
    return {"levels": c.levels, "sites": len(quantizers(qann))}


def _stage_convert(ctx: _Context) -> dict[str, Any]:
    """Rewire residual joins (if asked), QANN → SNN, conversion report."""
    from multispike.convert import conversion_report, to_snn

    c, out = ctx.config.convert, ctx.dir("convert")
    qann = _load(ctx.dir("calibrate") / "qann")
    if c.residual is not None:
        from multispike.convert.residual import rewire_residual

        cal = ctx.config.calibrate  # the quantizers rewiring adds get thresholds from data
        loader = ctx.data.calibration_dataloader(num_images=cal.images)
        frames = list(_student_frames(loader, c.timesteps))
        qann = rewire_residual(
            qann, c.residual, frames, method=cal.method, percentile=cal.percentile,
            progress=ctx.progress,
        )  # fmt: skip
    snn = to_snn(qann, max_spikes=c.max_spikes, timesteps=c.timesteps)
    ctx.save(qann, out / "qann")
    ctx.save(snn, out / "snn")
    report = conversion_report(snn, ctx.config.model.name)
    (out / "report.json").write_text(report.to_json() + "\n")
    (out / "report.txt").write_text(str(report) + "\n")
    return {"max_spikes": report.max_spikes, "timesteps": report.timesteps}


def _stage_distill(ctx: _Context) -> dict[str, Any]:
    """Step-wise distillation of the converted model from the ANN (Lightning)."""
    if not ctx.config.distill.enabled:
        return {"skipped": True}
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from multispike.distill.module import StepwiseDistillation
    from multispike.distill.students import Stage

    d, c, out = ctx.config.distill, ctx.config.convert, ctx.dir("distill")
    qann = _load(ctx.dir("convert") / "qann")
    schedule = [Stage("qann", epochs=d.qat_epochs)] if d.qat_epochs else []
    schedule.append(Stage("snn", timesteps=c.timesteps, max_spikes=c.max_spikes))
    system = StepwiseDistillation(
        ctx.teacher(), student=qann, stages=schedule, alpha=d.alpha, tau=d.tau,
        optimizer=d.optimizer, lr=d.lr, weight_decay=d.weight_decay,
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=d.qat_epochs + d.max_epochs, default_root_dir=out,
        logger=CSVLogger(out, name="logs"),
        callbacks=[ModelCheckpoint(dirpath=out / "checkpoints", save_last=True)],
        limit_train_batches=d.limit_train_batches, limit_val_batches=d.limit_val_batches,
        num_sanity_val_steps=0, enable_progress_bar=ctx.progress, enable_model_summary=False,
        accelerator="auto", devices=1,
    )  # fmt: skip
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(system, datamodule=ctx.data, ckpt_path=last if last.is_file() else None)
    snn = system.student.cpu()
    tuned_qann = _load(ctx.dir("convert") / "qann")
    tuned_qann.load_state_dict(snn.net.state_dict())
    ctx.save(tuned_qann, out / "qann")
    ctx.save(snn, out / "snn")
    return {"epochs": trainer.current_epoch}


class _Limited:
    """The first ``limit`` batches of a loader (all of them when ``limit`` is None)."""

    def __init__(self, loader: Any, limit: int | None) -> None:
        self.loader, self.limit = loader, limit

    def __len__(self) -> int:
        return len(self.loader) if self.limit is None else min(self.limit, len(self.loader))

    def __iter__(self) -> Iterator[Any]:
        for index, batch in enumerate(self.loader):
            if index >= len(self):
                return
            yield batch


def _stage_evaluate(ctx: _Context) -> dict[str, Any]:
    """The report of :func:`multispike.pipelines.evaluate.evaluate` on the test split.

    The final QANN (fine-tuned, or calibrated only) is evaluated with its SNN at
    ``(N, T)`` and the binary SNN side by side; the calibrated QANN and its SNN are added
    under ``calibrated`` so the gain of distillation shows.
    """
    from multispike.pipelines.evaluate import (
        SNNConfig,
        accuracy_summary,
        evaluate,
        nested_metrics,
        write_report,
    )

    e, c, out = ctx.config.evaluate, ctx.config.convert, ctx.dir("evaluate")
    loader = _Limited(ctx.data.test_dataloader(), e.max_batches)
    ann = ctx.teacher()
    qann = _load(ctx.dir(ctx.final()) / "qann")
    steps = e.timesteps or c.timesteps
    metrics = evaluate(
        ann, qann, loader, max_spikes=c.max_spikes, timesteps=steps,
        binary_timesteps=e.binary_timesteps, sweep=[SNNConfig.parse(s) for s in e.sweep],
        noise=e.noise, progress=ctx.progress,
    )  # fmt: skip
    calibrated = accuracy_summary(
        None, _load(ctx.dir("calibrate") / "qann"), _load(ctx.dir("convert") / "snn"), loader,
        progress=ctx.progress,
    )  # fmt: skip
    metrics["calibrated"] = {k.replace(".", "_"): v for k, v in calibrated.items()}
    metrics["run"] = {
        "recipe": ctx.config.name,
        "model": ctx.config.model.name,
        "data": ctx.config.data.spec,
        "distilled": ctx.config.distill.enabled,
    }
    write_report(metrics, out)
    nested = nested_metrics(metrics)  # JSON keys: t → "t"
    (ctx.root / "metrics.json").write_text(json.dumps(nested, indent=2) + "\n")
    return {"report": "evaluate/report.md", "metrics": "metrics.json"}


def _stage_export(ctx: _Context) -> dict[str, Any]:
    """The final SNN as ONNX (T = 1) and/or NIR."""
    from multispike.pipelines.export import export_nir, export_onnx

    snn, out = _load(ctx.dir(ctx.final()) / "snn"), ctx.dir("export")
    writers: dict[str, Callable[[Path], Any]] = {
        "onnx": lambda p: export_onnx(snn, p),
        "nir": lambda p: export_nir(snn, p),
    }
    files = []
    for fmt in ctx.config.export.formats:
        path = out / f"model.{fmt}"
        writers[fmt](path)
        files.append(str(path.relative_to(ctx.root)))
    return {"files": files}


@dataclass(frozen=True)
class StageSpec:
    """One stage: its name, the config sections it reads, and the function that runs it."""

    name: str
    sections: tuple[str, ...]
    run: Callable[[_Context], dict[str, Any]]


STAGES: tuple[StageSpec, ...] = (
    StageSpec("teacher", ("seed", "model", "data", "teacher"), _stage_teacher),
    StageSpec("calibrate", ("calibrate",), _stage_calibrate),
    StageSpec("convert", ("convert",), _stage_convert),
    StageSpec("distill", ("distill",), _stage_distill),
    StageSpec("evaluate", ("evaluate",), _stage_evaluate),
    StageSpec("export", ("export",), _stage_export),
)


def _stage_hashes(config: RunConfig) -> dict[str, str]:
    """Per stage, the hash of its config sections and of those of every earlier stage."""
    data, seen, hashes = dataclasses.asdict(config), {}, {}
    for stage in STAGES:
        seen.update({s: data[s] for s in stage.sections})
        text = json.dumps(seen, sort_keys=True, default=str)
        hashes[stage.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return hashes


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the runner


def run(
    config: RunConfig,
    out: str | Path,
    *,
    progress: bool = True,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run (or resume) every stage of ``config`` in the run directory ``out``.

    Args:
        config: from :func:`load_recipe`.
        out: the run directory (created).
        progress: show the stage bar and each stage's own bars.
        dry_run: validate and print the plan (which stages would run) without running.

    Returns:
        ``{"stages": {name: {"status", "seconds", ...}}, "metrics": metrics.json or None}``.

    Raises:
        StageError: a stage failed; earlier stages' outputs stay in ``out``.
    """
    root = Path(out)
    hashes = _stage_hashes(config)
    done = {s.name: _read_json(root / s.name / "done.json") for s in STAGES}
    fresh = {n: bool(d) and d.get("hash") == hashes[n] for n, d in done.items()}
    if dry_run:
        _check_names(config)
        plan = {n: "done" if fresh[n] else "would run" for n in hashes}
        return {"stages": {n: {"status": s} for n, s in plan.items()}, "metrics": None}
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    ctx = _Context(config, root, progress)
    record: dict[str, dict[str, Any]] = {}
    bar = tqdm(STAGES, desc=f"run {config.name}", unit="stage", disable=not progress)
    for stage in bar:
        bar.set_postfix_str(stage.name)
        if fresh[stage.name]:
            record[stage.name] = {**done[stage.name], "status": "done before"}
            continue
        record[stage.name] = _run_stage(ctx, stage, hashes[stage.name])
    bar.close()
    metrics = _read_json(root / "metrics.json")
    if metrics is not None:
        (root / "summary.txt").write_text(summary_table(metrics) + "\n")
    return {"stages": record, "metrics": metrics}


def _run_stage(ctx: _Context, stage: StageSpec, digest: str) -> dict[str, Any]:
    """Run one stage in a clean folder (kept if it was started with the same config)."""
    import lightning as L

    folder = ctx.dir(stage.name)
    started = _read_json(folder / "started.json")
    if folder.exists() and (started or {}).get("hash") != digest:
        shutil.rmtree(folder)  # outputs of another config: start over
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "started.json").write_text(json.dumps({"hash": digest}) + "\n")
    L.seed_everything(ctx.config.seed, verbose=False)
    start = time.perf_counter()
    try:
        outputs = stage.run(ctx)
    except Exception as err:
        raise StageError(
            f"stage '{stage.name}' failed: {type(err).__name__}: {err}\n"
            f"Outputs of the earlier stages are intact in {ctx.root}; fix the cause and run "
            f"the same command again to resume at '{stage.name}'."
        ) from err
    entry = {"hash": digest, "seconds": round(time.perf_counter() - start, 2), **outputs}
    (folder / "done.json").write_text(json.dumps(entry, indent=2) + "\n")
    return {**entry, "status": "ran"}


def _check_names(config: RunConfig) -> None:
    """Dry-run checks beyond the schema: the model is registered, the data spec parses."""
    import timm

    import multispike.zoo  # noqa: F401  (registers the zoo's models)
    from multispike.distill.data import from_spec

    if not timm.is_model(config.model.name):
        raise RecipeError(f"model.name: {config.model.name!r} is not a registered timm model")
    from_spec(config.data.spec, **config.data.options)


def summary_table(metrics: dict[str, Any]) -> str:
    """ANN / QANN / SNN top-1 with T, L, N, activity and energy against binary, as text.

    ``metrics`` is a run's ``metrics.json``. The energy column is the binary SNN's energy
    (``N = 1``, ``binary.timesteps`` steps, with memory accesses) over the multi-level one's.
    """
    snn, binary, calibrated = metrics["snn"], metrics["binary"], metrics["calibrated"]
    levels = metrics["levels"]

    def activity(run: dict[str, Any]) -> str:
        return f"{run['activity']['total']['events_per_neuron_step']:.4f}"

    def ratio(run: dict[str, Any]) -> str:
        return f"{binary['energy']['total'] / run['energy']['total']:.2f}x"

    steps = snn["timesteps"]
    cal_steps = max(int(t) for t in calibrated["snn_top1_at_t"])
    rows = [
        ("ANN", metrics["ann"]["top1"], "", "", "", "", ""),
        ("QANN, calibrated", calibrated["qann_top1"], "", levels, "", "", ""),
        ("SNN, calibrated", calibrated["snn_top1_at_t"][str(cal_steps)], cal_steps, levels,
         snn["max_spikes"], "", ""),
        ("QANN, final", metrics["qann"]["top1"], "", levels, "", "", ""),
        ("SNN, final", snn["top1"], steps, levels, snn["max_spikes"], activity(snn), ratio(snn)),
        ("SNN, binary", binary["top1"], binary["timesteps"], levels, 1, activity(binary), "1.00x"),
    ]  # fmt: skip
    head = ("model", "top-1 %", "T", "L", "N", "events/neuron/step", "energy binary/this")
    table = [head] + [(r[0], f"{100 * r[1]:.2f}", *map(str, r[2:])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    run = metrics["run"]
    title = f"{run['recipe']}: {run['model']} on {run['data']} ({snn['images']} test images)"
    return "\n".join([title, *lines])
