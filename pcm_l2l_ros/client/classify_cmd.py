"""``pcm-l2l classify``: few-shot classification of image files by the running vision service
(``/pcm_l2l/classify``), printing the answer.

Support set, either
  * ``--support DIR`` with one sub-folder per class (the folder's name is the class), or
  * ``--support FILE... --labels NAME...`` (or ``--support DIR`` of files, sorted by name, with ``--labels``):
    one label per image, any names; classes are numbered in the order they first appear.
Queries: ``--query FILE...``, a folder of files, or a folder with one sub-folder per class (then the sub-folder
names are the true classes and the accuracy is printed). Images are PNGs (or what Pillow reads), dark ink on
light paper as the Omniglot scans; each file becomes a sensor_msgs/Image that the node decodes as a camera's
(``nodes/image_codec.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcm_l2l_ros.client.common import add_connection_arguments, emit_json, refused


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--support",
        type=Path,
        nargs="+",
        required=True,
        metavar="DIR_OR_FILES",
        help="a folder with one sub-folder per class, or image files (or a folder of them) with --labels",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the class of each support image, in the order of the files",
    )
    p.add_argument(
        "--query",
        type=Path,
        nargs="+",
        required=True,
        metavar="DIR_OR_FILES",
        help="image files, a folder of them, or a folder with one sub-folder per (true) class",
    )
    p.add_argument("--inner-steps", type=int, default=0, help="adaptation steps on the chip (0: the model's default)")
    p.add_argument(
        "--drift-time",
        type=float,
        default=3600.0,
        metavar="S",
        help="simulated time since the chip was programmed (s; default 3600)",
    )
    add_connection_arguments(p, "/pcm_l2l/classify")


def _images_in(folder: Path) -> list[Path]:
    from pcm_l2l_ros.nodes.image_codec import IMAGE_SUFFIXES  # noqa: PLC0415

    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def collect(paths: list[Path], labels: list[str] | None, what: str) -> tuple[list[Path], list[str] | None]:
    """(image files, their class names or None) from the command line's paths (see the module docstring)."""
    if len(paths) == 1 and paths[0].is_dir() and _class_folders(paths[0]):
        if labels is not None:
            raise ValueError(f"--{what} {paths[0]} has one sub-folder per class; --labels is not used with it")
        files, names = [], []
        for d in _class_folders(paths[0]):
            imgs = _images_in(d)
            if not imgs:
                raise ValueError(f"{d}: no images")
            files += imgs
            names += [d.name] * len(imgs)
        return files, names
    files = []
    for p in paths:
        if p.is_dir():
            imgs = _images_in(p)
            if not imgs:
                raise ValueError(f"{p}: no images")
            files += imgs
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if labels is not None and len(labels) != len(files):
        raise ValueError(f"{len(labels)} --labels for {len(files)} --{what} images")
    return files, labels


def to_image_msgs(files: list[Path]):
    from sensor_msgs.msg import Image  # noqa: PLC0415

    from pcm_l2l_ros.nodes.image_codec import image_file_fields  # noqa: PLC0415

    return [Image(**image_file_fields(f)) for f in files]


def run(args: argparse.Namespace) -> int:
    from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415
    from pcm_l2l_ros.nodes.service_call import RESEND_S  # noqa: PLC0415

    s_files, s_names = collect(args.support, args.labels, "support")
    if s_names is None:
        raise ValueError("the support images need classes: --labels, or a --support folder with a sub-folder per class")
    q_files, q_true = collect(args.query, None, "query")
    classes = list(dict.fromkeys(s_names))  # in order of first appearance
    unknown = sorted({t for t in q_true or [] if t not in classes})
    if unknown:
        raise ValueError(f"query classes {unknown} are not among the support classes {classes}")
    request = FewShotClassify.Request(
        support_images=to_image_msgs(s_files),
        support_labels=[classes.index(n) for n in s_names],
        query_images=to_image_msgs(q_files),
        inner_steps=args.inner_steps,
        drift_time_s=args.drift_time,
    )
    with GraphClient("pcm_l2l_classify") as c:
        # a classification changes nothing on the node: re-sent if its answer is lost
        res = c.call(FewShotClassify, args.service, request, args.connect_timeout, args.timeout, resend_s=RESEND_S)
    if not res.success:
        return refused(args, "classify", res.message, {"classes": classes})
    n = len(classes)
    probs = [list(res.probabilities[i * n : (i + 1) * n]) for i in range(len(q_files))]
    queries = []
    for i, f in enumerate(q_files):
        q = {
            "file": str(f),
            "label": classes[res.labels[i]],
            "index": int(res.labels[i]),
            "probability": float(probs[i][res.labels[i]]),
            "probabilities": {name: float(p) for name, p in zip(classes, probs[i], strict=True)},
        }
        if q_true is not None:
            q["true"] = q_true[i]
        queries.append(q)
    out = {
        "success": True,
        "message": res.message,
        "classes": classes,
        "support_images": len(s_files),
        "queries": queries,
        "devices_written": res.devices_written,
        "devices_written_distinct": res.devices_written_distinct,
        "devices_total": res.devices_total,
        "adapt_time_s": res.adapt_time_s,
        "total_time_s": res.total_time_s,
    }
    if q_true is not None:
        out["accuracy"] = sum(q["label"] == q["true"] for q in queries) / len(queries)
    if args.json:
        emit_json(out)
        return 0
    print(
        f"classify: {n} classes ({', '.join(classes)}), {len(s_files)} support images, {len(q_files)} queries",
        flush=True,
    )
    width = max(len(str(f)) for f in q_files)
    for q in queries:
        mark = "" if q_true is None else ("  ok" if q["label"] == q["true"] else f"  WRONG (true {q['true']})")
        print(f"  {q['file']:<{width}}  -> {q['label']}  (p = {q['probability']:.3f}){mark}")
    if q_true is not None:
        right = sum(q["label"] == q["true"] for q in queries)
        print(f"accuracy {100 * out['accuracy']:.1f} % ({right} of {len(queries)})")
    print(
        f"{res.devices_written} device writes ({res.devices_written_distinct} distinct devices of "
        f"{res.devices_total}); adapted in {1e3 * res.adapt_time_s:.0f} ms, {1e3 * res.total_time_s:.0f} ms in the "
        "node",
        flush=True,
    )
    return 0
