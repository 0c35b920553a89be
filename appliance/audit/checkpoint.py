"""Checkpoints: the ledger's head written down outside the store, optionally signed, and checked later.

A checkpoint is one JSON line: {version, store, time, size, entries, head, anchors, key_id, signature}. `anchors`
holds the entry hash at every ANCHOR_EVERY-th ledger position, so that a store rewritten from some row on is not only
caught but located (to within ANCHOR_EVERY entries) even when the forger rewrote the ledger too. The signature is
Ed25519 over the canonical JSON of every other field, made with a key that lives outside the workspace
(`appliance audit keygen`); `key_id` is the first 16 hex digits of the public key's sha256.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.audit.chain import Finding, VerifyReport
from appliance.errors import UsageError

VERSION = 1
ANCHOR_EVERY = 256


def _payload(cp: dict[str, Any]) -> bytes:
    body = {k: v for k, v in cp.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def make(store: Path, report: VerifyReport, key_file: Path | None = None) -> dict[str, Any]:
    """A checkpoint of the head a verification found (its entry hashes, recomputed, give the anchors), signed if a
    key file is given."""
    hashes = report.entry_hashes
    cp: dict[str, Any] = {
        "version": VERSION, "store": str(store), "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": report.size, "entries": len(hashes), "head": report.head,
        "anchors": {str(p): hashes[p] for p in range(ANCHOR_EVERY - 1, len(hashes), ANCHOR_EVERY)},
        "key_id": None, "signature": None}
    if key_file is not None:
        private = load_private_key(key_file)
        cp["key_id"] = key_id(private.public_key())
        cp["signature"] = base64.b64encode(private.sign(_payload(cp))).decode()
    return cp


def check(cp: dict[str, Any], recomputed: list[str], entries: list[dict[str, Any]], public: Any = None,
          label: str = "checkpoint") -> list[Finding]:
    """Findings unless the store (its ledger recomputed) is a consistent extension of checkpoint `cp`."""
    found: list[Finding] = []
    if public is not None:
        if cp.get("signature") is None:
            return [Finding("?", "checkpoint_unsigned", f"{label} is not signed, and a public key was given")]
        from cryptography.exceptions import InvalidSignature
        try:
            public.verify(base64.b64decode(cp["signature"]), _payload(cp))
        except (InvalidSignature, ValueError):
            return [Finding("?", "checkpoint_forged", f"{label}: the signature does not match (the checkpoint was "
                                                      f"edited, or signed with another key than {key_id(public)})")]
    n = cp["entries"]
    if n == 0:
        return found
    if len(recomputed) < n:
        return [Finding("?", "truncated", f"{label} ({cp['time']}) covered {n} ledger entries ({cp['size']} rows); "
                                          f"the store has {len(recomputed)}: entries and rows were removed")]
    if recomputed[n - 1] == cp["head"] and entries[n - 1]["size"] == cp["size"]:
        return found
    first_bad = min((int(p) for p, h in cp["anchors"].items() if recomputed[int(p)] != h), default=n - 1)
    lo = max((int(p) for p in cp["anchors"] if int(p) < first_bad), default=-1) + 1
    window = entries[lo:first_bad + 1]
    runs = sorted({e["run_id"] for e in window if e["run_id"]})
    first = entries[lo]
    found.append(Finding(first["run_id"] or "?", "rewritten",
                         f"not a consistent extension of {label} ({cp['time']}, {cp['size']} rows, head "
                         f"{cp['head'][:16]}): a row written before it was changed, removed or inserted, and the "
                         f"ledger rewritten over it; the first change lies in ledger entries {lo}..{first_bad} "
                         f"(runs {', '.join(runs)}; first: run {first['run_id']} seq {first['seq_from']}..)"))
    return found


def load(path: Path) -> list[dict[str, Any]]:
    """The checkpoints in a file (one JSON object per line), with a clear error for a line that is not one."""
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            cp = json.loads(line)
            if cp.get("version") != VERSION or not {"size", "entries", "head", "anchors"} <= set(cp):
                raise ValueError("not a checkpoint of this appliance")
            if not (isinstance(cp["size"], int) and isinstance(cp["entries"], int)
                    and isinstance(cp["head"], (str, type(None))) and isinstance(cp["anchors"], dict)
                    and all(k.isdigit() and isinstance(v, str) for k, v in cp["anchors"].items())
                    and isinstance(cp.get("signature"), (str, type(None)))):
                raise ValueError("a field has the wrong type")
        except (json.JSONDecodeError, ValueError, AttributeError) as e:
            raise UsageError(f"{path}:{i}: not a checkpoint line ({e})") from None
        out.append(cp)
    return out


def key_id(public: Any) -> str:
    from cryptography.hazmat.primitives import serialization
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(path: Path) -> tuple[Path, str]:
    """Write a new Ed25519 private key to `path` (mode 0600, never overwritten) and its public key to PATH.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists():
            raise UsageError(f"{p} exists; keys are never overwritten (move it away first)")
    private = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pub_path.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub_path, key_id(private.public_key())


def load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"cannot read the signing key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 private key (make one with `appliance audit keygen`)")
    return key


def load_public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"cannot read the public key {path}: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return key
