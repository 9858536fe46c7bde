"""Share and group files on disk.

A share file is written with mode 0600 and holds either

- one line, the ``bfshare1…`` string (plain), or
- a JSON document (password-protected)::

    {"format": "oa-frostr-share/1", "idx": 1, "public_key": "<x-only share key>",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<b64>"},
     "cipher": {"name": "chacha20-poly1305", "nonce": "<b64, 12 bytes>"},
     "ciphertext": "<b64 of the encrypted bfshare string + 16-byte tag>"}

  The key is scrypt(password, salt) (32 bytes); the associated data is the UTF-8 of
  ``"oa-frostr-share/1|<idx>|<public_key>|<n>|<r>|<p>"``, so the visible header cannot be
  swapped onto another ciphertext. A wrong password and a tampered file both fail the tag.

A group file holds one line, the ``bfgroup1…`` string; the group is public.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from oa_node import files
from oa_node.errors import UserError
from oa_node.plugins.frostr.encoding import (
    EncodingError,
    GroupPackage,
    SharePackage,
    decode_group,
    decode_share,
)

FORMAT = "oa-frostr-share/1"
SCRYPT_N = 2**17  # ~0.3 s and 128 MiB: a share is worth slowing a guesser down
_MAX_N = 2**20


class ShareFileError(UserError):
    """A share or group file that is missing, unreadable, or has the wrong password."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ShareFileError(f"encrypted share: {what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ShareFileError(f"encrypted share: {what} is not valid base64") from None


def _aad(idx: int, public_key: str, n: int, r: int, p: int) -> bytes:
    return f"{FORMAT}|{idx}|{public_key}|{n}|{r}|{p}".encode()


def _kdf(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def encrypt_share(share: SharePackage, password: str, *, n: int = SCRYPT_N) -> str:
    """The password-protected JSON form of a share."""
    if not password:
        raise ShareFileError("an empty password protects nothing")
    r, p = 8, 1
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key = _kdf(password, salt, n, r, p)
    ct = ChaCha20Poly1305(key).encrypt(
        nonce, share.encode().encode(), _aad(share.idx, share.public_key, n, r, p))
    doc = {
        "format": FORMAT, "idx": share.idx, "public_key": share.public_key,
        "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": _b64(salt)},
        "cipher": {"name": "chacha20-poly1305", "nonce": _b64(nonce)},
        "ciphertext": _b64(ct),
    }
    return json.dumps(doc, indent=2) + "\n"


def decrypt_share(text: str, password: str) -> SharePackage:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise ShareFileError("encrypted share: not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ShareFileError(f"encrypted share: expected format {FORMAT!r}")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise ShareFileError("encrypted share: unsupported kdf (expected scrypt)")
    if not isinstance(cipher, dict) or cipher.get("name") != "chacha20-poly1305":
        raise ShareFileError("encrypted share: unsupported cipher (expected chacha20-poly1305)")
    n, r, p, idx = kdf.get("n"), kdf.get("r"), kdf.get("p"), doc.get("idx")
    public_key = doc.get("public_key")
    for name, value in (("n", n), ("r", r), ("p", p), ("idx", idx)):
        if type(value) is not int or value < 1:
            raise ShareFileError(f"encrypted share: {name} must be a positive integer")
    if n > _MAX_N or n & (n - 1) or r > 32 or p > 16:  # type: ignore[operator]
        raise ShareFileError("encrypted share: scrypt parameters out of range")
    if not isinstance(public_key, str):
        raise ShareFileError("encrypted share: public_key missing")
    key = _kdf(password, _unb64(kdf.get("salt"), "salt"), n, r, p)  # type: ignore[arg-type]
    try:
        plain = ChaCha20Poly1305(key).decrypt(
            _unb64(cipher.get("nonce"), "nonce"), _unb64(doc.get("ciphertext"), "ciphertext"),
            _aad(idx, public_key, n, r, p))  # type: ignore[arg-type]
    except (InvalidTag, ValueError):
        raise ShareFileError("wrong password, or the share file was modified") from None
    try:
        share = decode_share(plain.decode())
    except (EncodingError, UnicodeDecodeError) as exc:
        raise ShareFileError(f"encrypted share: {exc}") from None
    if share.idx != idx or share.public_key != public_key:
        raise ShareFileError("encrypted share: header does not match the share")
    return share


def is_encrypted(text: str) -> bool:
    return text.lstrip().startswith("{")


def write_private(path: str | Path, text: str, *, force: bool = False) -> Path:
    """Write ``text`` with mode 0600; refuse to overwrite unless ``force``."""
    try:
        return files.write_private(path, text, force=force)
    except FileExistsError as exc:
        raise ShareFileError(str(exc)) from None


def write_share(path: str | Path, share: SharePackage, password: str | None = None, *,
                force: bool = False, scrypt_n: int = SCRYPT_N) -> Path:
    text = share.encode() + "\n" if password is None else encrypt_share(share, password,
                                                                          n=scrypt_n)
    return write_private(path, text, force=force)


def write_group(path: str | Path, group: GroupPackage, *, force: bool = False) -> Path:
    # public, but 0600 like every file the node keeps (files.write_private)
    return write_private(path, group.encode() + "\n", force=force)


def _read(path: str | Path, what: str) -> str:
    p = Path(path)
    try:  # a share is a secret: refused when others may read it (files.read_private)
        return files.read_private(p, f"{what} file") if what == "share" else p.read_text(
            encoding="utf-8")
    except files.UnsafeFileError as exc:
        raise ShareFileError(str(exc)) from None
    except FileNotFoundError:
        raise ShareFileError(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ShareFileError(f"{p}: cannot read {what} file: {exc}") from None


def read_share(path: str | Path, password: str | None = None) -> SharePackage:
    """Load a share file; an encrypted one needs ``password``."""
    text = _read(path, "share")
    try:
        if is_encrypted(text):
            if password is None:
                raise ShareFileError(f"{path}: the share is password-protected; set the "
                                     "password environment variable")
            return decrypt_share(text, password)
        return decode_share(text)
    except EncodingError as exc:
        raise ShareFileError(f"{path}: {exc}") from None
    except ShareFileError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ShareFileError(f"{path}: {exc}") from None


def load_group(value: str, base_dir: Path | None = None) -> GroupPackage:
    """A group from a ``bfgroup1…`` string or from a file holding one."""
    text = value.strip()
    if not text.startswith("bfgroup1"):
        p = Path(text).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        text = _read(p, "group").strip()
    try:
        return decode_group(text)
    except EncodingError as exc:
        raise ShareFileError(f"group: {exc}") from None


def load_share(value: str, password: str | None = None,
               base_dir: Path | None = None) -> SharePackage:
    """A share from a ``bfshare1…`` string or a share file."""
    text = value.strip()
    if text.startswith("bfshare1"):
        try:
            return decode_share(text)
        except EncodingError as exc:
            raise ShareFileError(f"share: {exc}") from None
    p = Path(text).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return read_share(p, password)
