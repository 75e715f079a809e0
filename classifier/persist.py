"""Storing the trained model: our own file, signed, so we never unpickle what we did not write.

The file is a header line (JSON: format, model version, training fingerprint) and a pickle,
signed together with HMAC-SHA256 under a random key kept beside it (mode 0600). The signature
is checked before anything is unpickled: a file that anybody else wrote or changed is refused,
never executed. (skops was tried first: it wrote our vocabularies 30x larger and 100x slower.)
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import hmac
import json
import logging
import os
import pickle
import secrets
import stat
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nextround.classifier.inference import RejectionModel

logger = logging.getLogger(__name__)

MAGIC = b"NEXTROUND-MODEL 1\n"
KEY_BYTES = 32


class ModelFileError(ValueError):
    """The file is not a model we wrote (missing, wrong format or version, bad signature)."""


def private_directory(directory: Path) -> None:
    """Make `directory` with each missing parent 0700 (mkdir's `mode` is not applied to the
    parents, which a umask of 0 would leave writable by anyone). One that exists is left as
    it is, with a warning when other users may write in it (replace or add files): it may
    hold more than ours. Reading it is harmless, as our files are 0600: /etc/nextround is
    0755 on purpose (docs/install.md)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700, exist_ok=True)
        made.chmod(0o700)
    if not missing:
        with contextlib.suppress(OSError):
            status = directory.stat()
            mode = stat.S_IMODE(status.st_mode)
            if mode & 0o022:
                logger.warning(
                    "%s is writable by other users (mode %o); run: chmod go-w %s",
                    directory, mode, directory,
                )  # fmt: skip
            elif os.geteuid() != 0 and status.st_uid not in (os.geteuid(), 0):
                # Root is left alone: it runs `status` on the service's dynamic user's
                # directory (docs/install.md), and may write anywhere anyway.
                logger.warning(
                    "%s belongs to another user (uid %d), who may write in it",
                    directory, status.st_uid,
                )  # fmt: skip


def key_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".key")


def _key(model_path: Path, create: bool) -> bytes:
    """The signing key; with `create` (a model is being written), a new one if there is none
    or it is damaged: the model it signs is written anew, so nothing else needs it."""
    path = key_path_for(model_path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise ModelFileError(f"{path}: no signing key") from None
        return _new_key(path)
    if len(key) != KEY_BYTES:
        if not create:
            raise ModelFileError(f"{path}: not a signing key")
        logger.warning("%s: not a signing key; writing a new one", path)
        return _new_key(path)
    return key


def _new_key(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    temporary.replace(path)
    return key


def _signature(key: bytes, header: bytes, payload: bytes) -> str:
    return hmac.new(key, header + b"\n" + payload, hashlib.sha256).hexdigest()


def save_model(model: RejectionModel, path: Path, fingerprint: str) -> None:
    # Here, not at the top: the daemon's state files use this module, and need no numpy.
    from nextround.classifier.inference import MODEL_VERSION

    private_directory(path.parent)
    stored = replace(model, source=None, fingerprint=None)
    payload = pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL)
    header = json.dumps(
        {"version": MODEL_VERSION, "fingerprint": fingerprint, "size": len(payload)},
        sort_keys=True,
    ).encode()
    signature = _signature(_key(path, create=True), header, payload)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(MAGIC + header + b"\n" + signature.encode() + b"\n" + payload)
    temporary.replace(path)  # atomic: a crash never leaves half a model


def load_model(path: Path, fingerprint: str | None = None) -> RejectionModel:
    """Load a model we wrote; `fingerprint` (when given) must match the stored one."""
    from nextround.classifier.inference import MODEL_VERSION, RejectionModel

    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read: {error.strerror}") from None
    if not data.startswith(MAGIC):
        raise ModelFileError(f"{path}: not a nextround model")
    header, _, rest = data[len(MAGIC) :].partition(b"\n")
    signature, _, payload = rest.partition(b"\n")
    expected = _signature(_key(path, create=False), header, payload)
    if not hmac.compare_digest(expected.encode(), signature):
        raise ModelFileError(f"{path}: signature does not match: not written by this nextround")
    meta: dict[str, Any] = json.loads(header)
    if meta.get("version") != MODEL_VERSION:
        raise ModelFileError(f"{path}: model version {meta.get('version')} is outdated")
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise ModelFileError(f"{path}: trained on other data")
    # Safe: the HMAC above proves this process's installation wrote these bytes.
    model = pickle.loads(payload)  # noqa: S301
    del payload, data
    _release_free_memory()
    if not isinstance(model, RejectionModel):
        raise ModelFileError(f"{path}: not a nextround model")
    model.source, model.fingerprint = path, str(meta.get("fingerprint"))
    return model


def _release_free_memory() -> None:
    """Unpickling peaks at twice the model's size; give that back to the system, so the
    daemon's resident memory is what it uses, not what loading once needed (glibc only)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
