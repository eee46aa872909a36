"""What every resumable trainer shares (``train-snn``, ``train-cnn``, ``pretrain-cnn``).

* :func:`save_state`: the training state (``state.pt``) written atomically (a temporary file renamed into
  place, :func:`pcm_l2l_ros.checkpoint.atomic_write`); states are read back with
  :func:`pcm_l2l_ros.checkpoint.torch_load` (``weights_only``).
* :func:`stop_on_signals`: SIGTERM (and Ctrl-C) become a clean, checkpointed stop. The first signal only
  sets a flag that the trainer looks at between two steps, so the state it saves is one of a step boundary
  and the resumed run equals an uninterrupted one; a second signal stops at once (``KeyboardInterrupt``).
* :func:`drop_rows_after`: on resume, the ``metrics.csv`` rows of the steps after the saved state go (they
  are recomputed identically), so a resumed run's CSV equals an uninterrupted one's.
* :func:`run_loop`: the loop around a trainer's step (metrics.csv rows, progress bar, the stop and deadline
  checks between steps, a checkpoint every N steps and at the end, also after an interrupt).
* One deadline option for every trainer, ``--until-utc HH:MM`` (stop cleanly at that UTC time, the next one
  from now). ``--time-limit SECONDS`` (``train-snn``'s former option, stop after that many seconds) is kept
  as a hidden, deprecated alias, so recorded commands still run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pcm_l2l_ros.checkpoint import atomic_write

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(state, path)`` atomically: ``path`` is either the old state or the new one, never a part."""
    import torch  # noqa: PLC0415

    path = Path(path)
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


class StopRequest:
    """Set by :func:`stop_on_signals` when a stop signal arrives; the trainer checks it between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested (call it at a step boundary)."""
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {self.signum}")


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Inside the block the first of ``signals`` sets the yielded :class:`StopRequest` (the trainer stops at
    its next step boundary and saves); a second one raises ``KeyboardInterrupt`` at once. The previous
    handlers are restored on exit. Outside the main thread (where Python cannot install handlers) the
    request is never set."""
    stop = StopRequest()

    def _handler(signum, _frame):
        if stop.signum is not None:
            raise KeyboardInterrupt(f"signal {signum} (second)")
        stop.signum = signum
        log.warning("signal %d: stopping after this step (checkpointed); send it again to stop at once", signum)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def drop_rows_after(csv_path: Path, key: str, last: int, fields: Sequence[str] | None = None) -> None:
    """Keep the rows of ``csv_path`` whose ``key`` column is at most ``last``; the header becomes ``fields``
    (the columns the trainer writes now; default: the file's own)."""
    if not csv_path.exists():
        return
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if int(r[key]) <= last]
        fields = list(fields or reader.fieldnames or [])
    with atomic_write(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def run_loop(
    step: Callable[[], tuple[int, dict[str, Any], dict[str, str]]],
    start: int,
    end: int,
    save: Callable[[], None],
    ckpt_every: int,
    csv_path: Path | None,
    csv_fields: Sequence[str],
    *,
    deadline_unix: float | None = None,
    stop: StopRequest | None = None,
    progress: bool = True,
    unit: str = "step",
) -> int:
    """Call ``step()`` until its count reaches ``end``; returns the count.

    ``step()`` does one training step and returns (the count after it, its ``metrics.csv`` row, the progress
    bar's postfix). Before every step the stop request (a ``KeyboardInterrupt``, like Ctrl-C) and the deadline
    are checked; ``save()`` runs every ``ckpt_every`` steps (after the CSV is flushed) and once at the end,
    also after an interrupt. ``csv_path`` None: no rows are written (a read-only run).
    """
    from tqdm import tqdm  # noqa: PLC0415

    new = csv_path is not None and not csv_path.exists()
    f = open(os.devnull, "w") if csv_path is None else csv_path.open("a", newline="")  # noqa: SIM115
    writer = csv.DictWriter(f, list(csv_fields))
    if new:
        writer.writeheader()
    bar = tqdm(total=end, initial=start, disable=not progress, mininterval=5.0, unit=unit)
    done = start
    try:
        while done < end:
            if stop is not None:
                stop.check()
            if deadline_passed(deadline_unix):
                log.info("deadline reached at %s %d", unit, done)
                break
            done, row, postfix = step()
            writer.writerow(row)
            bar.update(1)
            bar.set_postfix(**postfix)
            if done % ckpt_every == 0:
                f.flush()
                save()
    except KeyboardInterrupt:
        log.warning("interrupted at %s %d; saving", unit, done)
    finally:
        bar.close()
        f.flush()
        f.close()
        save()
    return done


# ---------------------------------------------------------------------------------------------- deadline
def _hhmm(text: str) -> str:
    """argparse type of ``--until-utc``: validates ``HH:MM`` (the time is taken when training starts)."""
    parse_until_utc(text)
    return text


def parse_until_utc(hhmm: str, now: dt.datetime | None = None) -> float:
    """Unix time of the next ``HH:MM`` UTC after ``now`` (default: now): today's if still ahead, else
    tomorrow's."""
    try:
        h, m = (int(v) for v in hhmm.strip().split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{hhmm!r}: expected HH:MM (UTC)") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise argparse.ArgumentTypeError(f"{hhmm!r}: expected HH:MM with 00 <= HH < 24, 00 <= MM < 60")
    now = now or dt.datetime.now(dt.UTC)
    t = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if t < now:
        t += dt.timedelta(days=1)
    return t.timestamp()


def add_deadline_arguments(p: argparse.ArgumentParser) -> None:
    """``--until-utc HH:MM`` and the hidden, deprecated ``--time-limit SECONDS``."""
    p.add_argument(
        "--until-utc",
        type=_hhmm,
        default=None,
        metavar="HH:MM",
        help="stop cleanly (checkpointed) at this UTC time, the next one from now",
    )
    p.add_argument("--time-limit", type=float, default=0.0, help=argparse.SUPPRESS)  # deprecated: seconds from start


def deadline_from_args(args: argparse.Namespace, now: float | None = None) -> float | None:
    """Unix time to stop at (the earlier of ``--until-utc`` and ``--time-limit`` from ``now``), or None."""
    now = time.time() if now is None else now
    ends = []
    if getattr(args, "until_utc", None):
        ends.append(parse_until_utc(args.until_utc, dt.datetime.fromtimestamp(now, dt.UTC)))
    if getattr(args, "time_limit", 0) and args.time_limit > 0:
        log.warning("--time-limit is deprecated; use --until-utc HH:MM")
        ends.append(now + args.time_limit)
    return min(ends) if ends else None


def deadline_passed(deadline_unix: float | None) -> bool:
    return deadline_unix is not None and time.time() > deadline_unix
