"""``qcline datasets``: import labeled images into the dataset library, list / show snapshots, export them.

Commands raise ``QCError`` subclasses and let the main CLI turn them into one line and an exit code, so
this app stays usable (and testable) on its own. Human output goes to stdout through ``typer.echo``;
``--json`` prints exactly one JSON object (or list) for scripts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import DataDirOption, JsonOption, print_json
from datasets.formats import FORMATS
from datasets.library import DatasetLibrary, summary
from inspection.errors import ConfigError
from inspection.settings import load_settings

log = logging.getLogger(__name__)

datasets_app = typer.Typer(help="Labeled image datasets: import (VOC, YOLO, COCO, labelme, archives), "
                                "immutable snapshots, export for training.", no_args_is_help=True)

EXPORT_FORMATS = ("yolo", "coco")


def _library(data_dir: Path | None) -> DatasetLibrary:
    return DatasetLibrary(load_settings(data_dir=data_dir).data_dir / "datasets")




def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@datasets_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder (or its parent), a YOLO data.yaml, a COCO .json "
                                              "file, or a .zip / .tar(.gz) archive.")],
    fmt: Annotated[str, typer.Option("--format", help="voc, yolo, coco, labelme or auto.")] = "auto",
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of new images for val.")] = 0.2,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", help="Share of images held out as a test split, never used for any choice (drawn by "
                                "content: with a source split, add --resplit).")] = 0.0,
    classes: Annotated[str | None, typer.Option(
        "--classes", help="Comma-separated class names (YOLO: names of ids 0..n-1; others: classes to keep).")] = None,
    parent: Annotated[str | None, typer.Option(
        "--parent", help="Compose on this snapshot (id or prefix): its images and splits are kept.")] = None,
    resplit: Annotated[bool, typer.Option(
        "--resplit", help="Ignore the source's own train / val split and split by content (--val-fraction).")] = False,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a dataset and register an immutable snapshot; every skipped file or box is listed with a reason."""
    fmt = _choice(fmt, (*FORMATS, "auto"), "--format")
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    if classes is not None and not names:
        raise ConfigError("--classes is empty: give comma-separated class names")
    outcome = _library(data_dir).import_path(path, fmt, classes=names, val_fraction=val_fraction,
                                             test_fraction=test_fraction, parent=parent, resplit=resplit)
    snapshot, result = outcome.snapshot, outcome.result
    report = {
        "snapshot": snapshot.id,
        "images": len(snapshot.entries),
        "train": len(snapshot.split("train")),
        "val": len(snapshot.split("val")),
        **({"test": len(snapshot.split("test"))} if snapshot.has_test else {}),
        **({"split_rule": snapshot.split_rule.to_json()} if snapshot.split_rule else {}),
        "classes": list(snapshot.classes),
        "split_origin": snapshot.split_origin,
        "found": list(result.found),
        "skipped": [{"path": issue.path, "reason": issue.reason} for issue in result.skipped],
    }
    if as_json:
        print_json(report)
        return
    for line in result.found:  # what was found comes before what was skipped
        typer.echo(f"found: {line}")
    origin = {"source": "the source's split", "content": "split by content",
              "source+content": "the source's split, the rest by content"}.get(snapshot.split_origin, "")
    test = f", {report['test']} test" if "test" in report else ""
    typer.echo(f"snapshot {snapshot.id}: {report['images']} images ({report['train']} train, {report['val']} val"
               f"{test}{', ' + origin if origin else ''}), "
               f"classes {', '.join(snapshot.classes) or '-'}" + (f", parent {snapshot.parent[:12]}"
                                                                   if snapshot.parent else ""))
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)}:")
        for issue in result.skipped:
            typer.echo(f"  {issue.path}: {issue.reason}")


@datasets_app.command("list")
def list_cmd(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List the library's snapshots, oldest first."""
    rows = _library(data_dir).list()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no snapshots yet: import one with `qcline datasets import PATH`")
    for row in rows:
        parent = f" parent {row['parent'][:12]}" if row["parent"] else ""
        test = f"test {row['images']['test']:>6}  " if "test" in row["images"] else ""
        typer.echo(f"{row['id'][:12]}  {row['created_at']}  train {row['images']['train']:>6}  "
                   f"val {row['images']['val']:>6}  {test}{','.join(row['classes'])}  {row['source']}{parent}")


@datasets_app.command("show")
def show_cmd(snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="Snapshot id or unique prefix.")],
             data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Summary of one snapshot: splits, classes, boxes per class."""
    snapshot = _library(data_dir).get(snapshot_id)
    info = summary(snapshot)
    info["boxes"] = {name: sum(b.class_name == name for e in snapshot.entries for b in e.image.boxes)
                     for name in snapshot.classes}
    info["negatives"] = sum(not e.image.boxes for e in snapshot.entries)
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


@datasets_app.command("export")
def export_cmd(snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="Snapshot id or unique prefix.")],
               out: Annotated[Path, typer.Option("--out", help="Folder to write.")],
               fmt: Annotated[str, typer.Option("--format", help="yolo or coco.")] = "yolo",
               data_dir: DataDirOption = None) -> None:
    """Write a snapshot as a YOLO (ultralytics) or COCO dataset."""
    from datasets.export import export_coco, export_yolo

    fmt = _choice(fmt, EXPORT_FORMATS, "--format")
    snapshot = _library(data_dir).get(snapshot_id)
    written = export_yolo(snapshot, out) if fmt == "yolo" else export_coco(snapshot, out)
    typer.echo(str(written))


@datasets_app.command("derive")
def derive_cmd(snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="Parent snapshot id or prefix.")],
               drop_class: Annotated[list[str], typer.Option("--drop-class", help="Class whose boxes to remove.")],
               data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """A child snapshot without some classes' labels, same split: to test that reviews can teach them."""
    snapshot = _library(data_dir).without_classes(snapshot_id, drop_class)
    if as_json:
        print_json({"snapshot": snapshot.id, "parent": snapshot.parent, "classes": list(snapshot.classes)})
        return
    typer.echo(f"{snapshot.id}  (parent {snapshot.parent}, classes {', '.join(snapshot.classes)})")


@datasets_app.command("build-from-reviews")
def build_from_reviews_cmd(
    parent: Annotated[str | None, typer.Option(
        "--parent", help="Compose on this snapshot (id or prefix): its images and splits are kept.")] = None,
    since: Annotated[int, typer.Option(
        "--since", help="Only inspections whose latest review id is above this (the last build's end).")] = 0,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Turn operator reviews into a snapshot: confirmed findings, false alarms as negatives, corrections."""
    from api.composition import open_store
    from datasets.from_reviews import build_from_reviews_report

    settings = load_settings(data_dir=data_dir)
    library = DatasetLibrary(settings.data_dir / "datasets")
    with open_store(settings) as store:
        built = build_from_reviews_report(store, library, parent=parent, since_id=since)
    report = {
        "snapshot": built.snapshot.id,
        "images": len(built.snapshot.entries),
        "reviews": len(built.review_ids),
        "skipped": [{"path": issue.path, "reason": issue.reason} for issue in built.result.skipped],
    }
    if as_json:
        print_json(report)
        return
    typer.echo(f"snapshot {built.snapshot.id}: {report['images']} images, {report['reviews']} reviews used "
               f"({built.snapshot.source}), classes {', '.join(built.snapshot.classes) or '-'}")
    for issue in built.result.skipped:
        typer.echo(f"  skipped {issue.path}: {issue.reason}")
