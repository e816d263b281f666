"""The one rule for every command that writes a folder: never delete, move or replace a path
the command did not create.

Every entry point passes each output flag through ``check_output_dir`` before any work. It
refuses folders that cannot be meant as an output (an empty name, the current folder, ``/``,
the home folder), folders that are, sit inside, or contain one of the command's inputs (a
rebuild there would swap the inputs away, or the reader would read its own output), files
where a folder is wanted, and folders that already hold files the command does not recognise
as its own. A symlinked output is resolved: the command works on the link's target and never
replaces the link itself.
"""

import dataclasses
import os

from thyroid.flag_errors import FlagValueError


class OutputError(FlagValueError):
    """An output flag names a place the command must not write; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class InputPath:
    """An input of the command: the flag that named it and its path (file or folder)."""
    flag: str
    path: str


def _resolved(path):
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _inside(child, parent):
    """True when ``child`` is ``parent`` or lies below it (both resolved)."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _refused_place(raw, resolved):
    """Why no command may write to this place ('' when it may)."""
    if not raw.strip():
        return "is empty; name an output folder"
    if resolved == _resolved(os.getcwd()):
        return "is the current folder; name a new or dedicated folder"
    if resolved == os.path.abspath(os.sep):
        return "is the file-system root"
    if resolved == _resolved("~"):
        return "is the home folder; name a folder inside it"
    return ""


def _input_clash(resolved, inputs, container):
    """Why the output clashes with an input ('' when it does not). A ``container`` only gets
    new folders added inside it, so it may hold the inputs further down."""
    for item in inputs:
        if not item.path:
            continue
        source = _resolved(item.path)
        if resolved == source:
            return f"is the input --{item.flag}"
        if _inside(resolved, source):
            return f"lies inside the input --{item.flag}={item.path}"
        if _inside(source, resolved) and not container:
            return f"contains the input --{item.flag}={item.path}"
    return ""


def check_output_dir(flag, value, inputs=(), is_ours=None, container=False):
    """-> the resolved absolute output folder, or raises ``OutputError`` naming ``flag``.

    ``inputs``: ``InputPath``s the command reads. ``is_ours(folder) -> bool``: whether an
    existing, non-empty folder holds only what this command writes (None: any folder is ours,
    for commands that only add new files beside what is there). ``container``: the command
    only creates new folders inside this one (the study's runs), never replaces it."""
    raw = "" if value is None else str(value)
    resolved = _resolved(raw) if raw.strip() else ""
    reason = _refused_place(raw, resolved) or _input_clash(resolved, inputs, container)
    if not reason and os.path.lexists(resolved) and not os.path.isdir(resolved):
        reason = "exists and is not a folder"
    if not reason and is_ours is not None and os.path.isdir(resolved):
        if os.listdir(resolved) and not is_ours(resolved):
            reason = ("holds files this command did not write; name an empty folder or one "
                      "this command wrote")
    if reason:
        raise OutputError(flag, raw, reason)
    return resolved


def check_name_component(flag, value):
    """A name that becomes one folder under an output folder: a single path component."""
    if (not value or value in (".", "..") or os.sep in value
            or (os.altsep and os.altsep in value) or "\x00" in value):
        raise OutputError(flag, value, "must be a single folder name (no '/', not '.' or '..')")
    return value
