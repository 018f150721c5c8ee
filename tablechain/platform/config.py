"""Node assembly from a data directory: genesis, node settings, the validator key.

A data directory holds:

- ``genesis.json``: the chain's founding parameters (``tablechain.ledger.chain.Genesis``);
- ``node.json``: this node's settings (key file, database URL, RPC address, block cutting);
- ``validator.key``: the validator's private key as hex (mode 0600);
- ``node.db``: the embedded SQLite database (default ``db_url``), created on first start.

``init_datadir`` creates a new chain in a new or empty directory, all or nothing;
``load_settings`` reads it back and ``open_node`` assembles a ``Node`` from it.
``init_cluster`` creates a chain of several validators: one data directory per validator
(``v0`` ..) under a root holding ``cluster.json``, read back by ``load_cluster`` (see
``tablechain.platform.cluster``).
Nothing here runs at import time, and the ledger is imported only when a node is actually
opened, so the CLI stays quick to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tablechain.crypto import (
    SCHEMES,
    PrivateKey,
    address_to_text,
    generate_private_key,
    private_key_from_bytes,
)
from tablechain.crypto.keys import CryptoError
from tablechain.errors import TablechainError
from tablechain.platform.errors import ConfigError, DataDirLocked

if TYPE_CHECKING:
    from tablechain.ledger.chain import Genesis
    from tablechain.ledger.node import Node

__all__ = [
    "NodeSettings",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "init_datadir",
    "load_settings",
    "load_genesis",
    "genesis_from_json",
    "open_node",
    "open_ledger",
    "database_errors",
    "datadir_lock",
    "read_key_file",
    "write_key_file",
    "national_available",
    "rpc_url_of",
    "ClusterLayout",
    "ClusterMember",
    "init_cluster",
    "load_cluster",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5005
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
GENESIS_FILE = "genesis.json"
NODE_FILE = "node.json"
KEY_FILE = "validator.key"
LOCK_FILE = "LOCK"
RPC_URL_FILE = "rpc.url"
CLUSTER_FILE = "cluster.json"
SIGNER_STATE_FILE = "signer.state"
DATADIR_TOKEN = "{datadir}"  # noqa: S105 - a path placeholder, not a secret
_DEFAULT_DB = "sqlite:///{datadir}/node.db"


@dataclass(frozen=True)
class NodeSettings:
    """The contents of ``node.json``, with paths resolved against the data directory."""

    datadir: Path
    genesis_file: str = GENESIS_FILE
    validator_key: str = KEY_FILE
    key_scheme: str = "secp256k1"
    db_url: str = _DEFAULT_DB
    rpc_host: str = DEFAULT_HOST
    rpc_port: int = DEFAULT_PORT
    max_block_txs: int | None = None
    max_block_wait_ms: int | None = None
    mempool_size: int = 100_000
    mempool_per_account: int = 10_000
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resolved_db_url(self) -> str:
        return self.db_url.replace(DATADIR_TOKEN, str(self.datadir))

    @property
    def key_path(self) -> Path:
        return self.datadir / self.validator_key

    @property
    def genesis_path(self) -> Path:
        return self.datadir / self.genesis_file

    def to_json(self) -> dict[str, Any]:
        return {
            "genesis": self.genesis_file,
            "validator_key": self.validator_key,
            "key_scheme": self.key_scheme,
            "db_url": self.db_url,
            "rpc": {"host": self.rpc_host, "port": self.rpc_port,
                    "max_body_bytes": self.max_body_bytes},
            "block": {"max_block_txs": self.max_block_txs,
                      "max_block_wait_ms": self.max_block_wait_ms},
            "mempool_size": self.mempool_size,
            "mempool_per_account": self.mempool_per_account,
            **dict(self.extra),
        }


def _opt_int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 1) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _settings_from_json(datadir: Path, obj: Any) -> NodeSettings:
    if not isinstance(obj, dict):
        raise ConfigError(f"{datadir / NODE_FILE} must hold a JSON object")
    known = {"genesis", "validator_key", "key_scheme", "db_url", "rpc", "block", "mempool_size",
             "mempool_per_account"}
    rpc = obj.get("rpc") or {}
    block = obj.get("block") or {}
    if not isinstance(rpc, dict) or not isinstance(block, dict):
        raise ConfigError("node.json: 'rpc' and 'block' must be objects")
    strings = {}
    for key, default in (("genesis", GENESIS_FILE), ("validator_key", KEY_FILE),
                         ("key_scheme", "secp256k1"), ("db_url", _DEFAULT_DB)):
        value = obj.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"node.json: {key} must be a non-empty string")
        strings[key] = value
    if strings["key_scheme"] not in SCHEMES:
        raise ConfigError(f"node.json: key_scheme must be one of {', '.join(SCHEMES)}")
    host = rpc.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise ConfigError("node.json: rpc.host must be a host name or address")
    port = _opt_int(rpc, "port", "rpc", minimum=0)
    if port is not None and port > 65535:
        raise ConfigError("node.json: rpc.port must be at most 65535")
    return NodeSettings(
        datadir=datadir,
        genesis_file=strings["genesis"],
        validator_key=strings["validator_key"],
        key_scheme=strings["key_scheme"],
        db_url=strings["db_url"],
        rpc_host=host,
        rpc_port=DEFAULT_PORT if port is None else port,
        max_block_txs=_opt_int(block, "max_block_txs", "block"),
        max_block_wait_ms=_opt_int(block, "max_block_wait_ms", "block"),
        mempool_size=_opt_int(obj, "mempool_size", "node") or 100_000,
        mempool_per_account=_opt_int(obj, "mempool_per_account", "node") or 10_000,
        max_body_bytes=_opt_int(rpc, "max_body_bytes", "rpc", minimum=1024)
        or DEFAULT_MAX_BODY_BYTES,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def _read_json(path: Path, made_by: str = "tablechain node init") -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `{made_by}` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def load_settings(datadir: str | os.PathLike[str]) -> NodeSettings:
    """Read ``node.json`` of a data directory."""
    path = Path(datadir).resolve()
    if not path.is_dir():
        raise ConfigError(f"data directory {path} does not exist")
    return _settings_from_json(path, _read_json(path / NODE_FILE))


def load_genesis(settings: NodeSettings) -> Genesis:
    return genesis_from_json(_read_json(settings.genesis_path), settings.genesis_path)


_GENESIS_INTS = {"network_id": (0, 1 << 32), "timestamp_ms": (0, 1 << 63),
                 "max_block_txs": (1, 1 << 63), "max_block_wait_ms": (0, 1 << 63)}


def genesis_from_json(obj: Any, where: str | os.PathLike[str]) -> Genesis:
    """A ``Genesis`` from a genesis file's JSON, its fields checked first.

    ``Genesis.from_json`` coerces with ``int()``: a float was truncated, a huge number
    (``1e400``) raised OverflowError and a block limit of 0 or below was taken, so the types
    and ranges are checked here and every problem is a ``ConfigError``."""
    from tablechain.ledger.chain import Genesis

    if not isinstance(obj, dict):
        raise ConfigError(f"{where} must hold a JSON object")
    for key, (low, high) in _GENESIS_INTS.items():
        value = obj.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
            raise ConfigError(f"{where}: {key} must be an integer from {low} to {high - 1}, "
                              f"got {value!r}")
    for key in ("chain_name", "suite"):
        if not isinstance(obj.get(key), str):
            raise ConfigError(f"{where}: {key} must be a string")
    validators = obj.get("validators", [])
    if not isinstance(validators, list) or not all(isinstance(v, dict) for v in validators):
        raise ConfigError(f"{where}: validators must be a list of objects")
    if not isinstance(obj.get("admission", {}), dict):
        raise ConfigError(f"{where}: admission must be an object")
    try:
        genesis = Genesis.from_json(obj)
        genesis.hash()  # validates the suite name
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where} is not a valid genesis: {exc!r}") from None
    except TablechainError as exc:
        raise ConfigError(f"{where} is not a valid genesis: {exc.message}") from None
    return genesis


# --- key files -------------------------------------------------------------------------------


def write_key_file(path: str | os.PathLike[str], key: PrivateKey) -> Path:
    """Write a private key to a new file readable by its owner only (0600).

    The format is the key's hex, prefixed with ``<scheme>:`` unless it is secp256k1.
    """
    out = Path(path)
    text = key.to_bytes().hex()
    if key.scheme != "secp256k1":
        text = f"{key.scheme}:{text}"
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{out} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")
    return out


def read_key_file(path: str | os.PathLike[str], scheme: str | None = None) -> PrivateKey:
    """Read a key file written by ``write_key_file`` (hex, or ``<scheme>:<hex>``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {p}: {exc}") from None
    if ":" in text:
        scheme, _, text = text.partition(":")
    scheme = scheme or "secp256k1"
    if text.startswith("0x"):
        text = text[2:]
    try:
        return private_key_from_bytes(scheme, bytes.fromhex(text))
    except ValueError:
        raise ConfigError(f"key file {p} does not hold a hex private key") from None
    except CryptoError as exc:
        raise ConfigError(f"key file {p}: {exc.message}") from None


def national_available() -> bool:
    """Whether the SM2 signature scheme (the national suite) is installed."""
    return importlib.util.find_spec("tablechain.crypto.sm2") is not None


# --- creating a data directory ---------------------------------------------------------------


def init_datadir(datadir: str | os.PathLike[str], *, national: bool = False,
                 network_id: int | None = None, chain_name: str = "tablechain",
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 db_url: str | None = None, max_block_txs: int | None = None,
                 max_block_wait_ms: int | None = None,
                 timestamp_ms: int | None = None,
                 trusted_roots: list[str] | None = None,
                 admins: list[str] | None = None) -> NodeSettings:
    """Create a new chain with one validator in ``datadir`` (absent or an empty directory),
    all or nothing (see ``_building``)."""
    from tablechain.ledger.chain import Genesis

    if national and not national_available():
        raise ConfigError("the national suite needs SM2 (tablechain.crypto.sm2), "
                          "which is not installed in this build")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {port}")
    network_id = _check_chain_options(network_id, max_block_txs, max_block_wait_ms)
    path = Path(datadir).resolve()
    if (path / NODE_FILE).exists():
        raise ConfigError(f"{path / NODE_FILE} already exists; {path} already holds a node")
    for name in (GENESIS_FILE, KEY_FILE):
        if (path / name).exists():  # an init of an older version that was interrupted?
            raise ConfigError(f"{path} holds {name} but no {NODE_FILE}, so it is not a node; "
                              f"init never overwrites a key: move {name} away if you do not "
                              "need it, then run init again")
    scheme = "sm2" if national else "secp256k1"
    key = generate_private_key(scheme)
    validator = {"address": address_to_text(key.address()), "scheme": scheme,
                 "public_key": key.public_key.to_bytes().hex()}
    defaults = Genesis()
    genesis = Genesis(
        chain_name=chain_name, network_id=network_id,
        suite="national" if national else "international",
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        validators=(validator,),
        max_block_txs=max_block_txs or defaults.max_block_txs,
        max_block_wait_ms=max_block_wait_ms or defaults.max_block_wait_ms,
        admission=({"enabled": True, "trusted_roots": list(trusted_roots),
                    "admins": sorted(admins or [])} if trusted_roots else {}),
    )
    with _building(path) as building:
        settings = NodeSettings(datadir=path, key_scheme=scheme, db_url=db_url or _DEFAULT_DB,
                                rpc_host=host, rpc_port=port)
        _write_plain(building, key)
        (building / GENESIS_FILE).write_text(json.dumps(genesis.to_json(), indent=2) + "\n",
                                             encoding="utf-8")
        (building / NODE_FILE).write_text(json.dumps(settings.to_json(), indent=2) + "\n",
                                          encoding="utf-8")
    return settings


def _check_chain_options(network_id: int | None, max_block_txs: int | None,
                         max_block_wait_ms: int | None) -> int:
    """Check a new chain's options before anything is written; the network id (random when
    None). A block limit of 0 or less would be written into genesis (0 silently meant the
    default), so it is refused like any other value out of range."""
    for name, value in (("--max-block-txs", max_block_txs),
                        ("--max-block-wait-ms", max_block_wait_ms)):
        if value is not None and not 1 <= value < 1 << 63:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if network_id is None:
        network_id = 1000 + secrets.randbelow((1 << 31) - 1000)
    if not 0 <= network_id < 1 << 32:
        raise ConfigError("network id must be within 0 .. 2^32-1")
    return network_id


@contextlib.contextmanager
def _building(target: Path) -> Iterator[Path]:
    """A new directory to fill, renamed to ``target`` (absent or an empty directory) only once
    it is complete: an init that is interrupted leaves no half-made node or cluster behind,
    which init then refused ("already holds a node") and start refused too ("run init first").

    It is built as ``<target>.init-<random>.partial`` beside the target, synced, then renamed.
    One that raises removes what it built (a key no one has seen yet); a killed one leaves that
    directory, which nothing reads: the next init builds under a name of its own."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory")
    if target.exists():
        if any(target.iterdir()):
            raise ConfigError(f"{target} is not an empty directory")
        if os.path.ismount(target):
            raise ConfigError(f"{target} is a mount point, which init cannot rename a finished "
                              f"directory onto; init a directory inside it ({target / 'node'})")
    building = target.with_name(f"{target.name}.init-{secrets.token_hex(4)}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        building.mkdir()
    except FileExistsError:
        raise ConfigError(f"{target.parent} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {building}: {exc.strerror}") from None
    try:
        yield building
        for item in sorted(building.rglob("*"), reverse=True):  # files before their directory
            _fsync(item)
        _fsync(building)
        if target.exists():  # an empty directory made for it: keep its permissions
            os.chmod(building, target.stat().st_mode & 0o7777)
        os.rename(building, target)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise ConfigError(f"cannot create {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    _fsync(target.parent)  # the rename itself survives a power loss


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_plain(path: Path, key: PrivateKey) -> None:
    """The validator key is plain hex; its scheme is recorded in node.json."""
    fd = os.open(path / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.to_bytes().hex() + "\n")


# --- opening a node --------------------------------------------------------------------------


@contextlib.contextmanager
def datadir_lock(datadir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on a data directory (released by the OS if the process dies)."""
    path = Path(datadir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # e.g. left by a node run as another user
        raise ConfigError(f"cannot open {path.resolve()}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(f"another node is running on {Path(datadir).resolve()}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def _shown_url(url: str) -> str:
    """A database URL fit for an error message: its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url.split("://", 1)[0] + "://...") if "://" in url else repr(url)


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy's errors while a database is being opened (a URL it cannot parse, a
    dialect or driver it lacks, a file or server it cannot reach) into a ``ConfigError``;
    they reached the command line as tracebacks."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        yield
    except (ArgumentError, DBAPIError) as exc:  # NoSuchModuleError is an ArgumentError
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the database {_shown_url(url)}: {reason}") from None


def open_ledger(settings: NodeSettings) -> Any:
    """The ``Ledger`` of a data directory (to read, verify or replay it; no node)."""
    from tablechain.ledger.chain import Ledger

    genesis = load_genesis(settings)
    with database_errors(settings.resolved_db_url):
        return Ledger(settings.resolved_db_url, genesis)


def _check_key_in_genesis(settings: NodeSettings, genesis: Genesis, key: PrivateKey) -> None:
    """A node signs its blocks' proposer field with its key, so the key must be one genesis
    names: a wrong key file, or a key_scheme that reads the same hex as another scheme's key,
    otherwise ran silently as an account the chain never admitted."""
    public = key.public_key.to_bytes().hex()
    named = [v for v in genesis.validators if isinstance(v.get("public_key"), str)]
    if named and not any(v["public_key"].lower() == public
                         and v.get("scheme", key.scheme) == key.scheme for v in named):
        raise ConfigError(f"{settings.key_path} (read as {key.scheme}) is not the key of a "
                          f"validator in {settings.genesis_path}; check validator_key and "
                          "key_scheme in node.json")


def open_node(settings: NodeSettings) -> Node:
    """Assemble a ``Node`` (not yet producing blocks) from a data directory's settings."""
    from tablechain.ledger.node import Node, NodeConfig

    genesis = load_genesis(settings)
    key = read_key_file(settings.key_path, settings.key_scheme)
    _check_key_in_genesis(settings, genesis, key)
    config = NodeConfig(max_block_txs=settings.max_block_txs,
                        max_block_wait_ms=settings.max_block_wait_ms,
                        mempool_size=settings.mempool_size,
                        mempool_per_account=settings.mempool_per_account)
    with database_errors(settings.resolved_db_url):
        return Node(settings.resolved_db_url, genesis, key, config)


def rpc_url_of(settings: NodeSettings) -> str:
    """The URL a running node serves on: ``rpc.url`` (written at start) or node.json's."""
    written = settings.datadir / RPC_URL_FILE
    try:
        text = written.read_text(encoding="ascii").strip()
    except OSError:
        text = ""
    return text or f"http://{settings.rpc_host}:{settings.rpc_port}"


# --- a set of validator data directories (a local cluster) -----------------------------------


@dataclass(frozen=True)
class ClusterMember:
    """One validator of a cluster: its id in genesis, data directory and RPC port (0: any)."""

    validator_id: str
    datadir: Path
    rpc_port: int


@dataclass(frozen=True)
class ClusterLayout:
    """The contents of ``cluster.json``: the chain, the Ray namespace and the validators."""

    root: Path
    chain: str
    namespace: str
    members: tuple[ClusterMember, ...]
    consensus: Mapping[str, Any] = field(default_factory=dict)

    def member(self, validator_id: str) -> ClusterMember:
        for m in self.members:
            if m.validator_id == validator_id:
                return m
        raise ConfigError(f"{validator_id!r} is not a validator of the cluster in {self.root}")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.validator_id for m in self.members)


def init_cluster(root: str | os.PathLike[str], validators: int = 4, *,
                 scheme: str = "secp256k1", network_id: int | None = None,
                 chain_name: str = "tablechain", host: str = DEFAULT_HOST, base_port: int = 0,
                 max_block_txs: int | None = None, max_block_wait_ms: int | None = None,
                 timestamp_ms: int | None = None,
                 consensus: Mapping[str, Any] | None = None) -> ClusterLayout:
    """Create ``validators`` data directories ``root/v0 .. root/v{n-1}`` sharing one genesis that
    names all of them (ids ``v0``..), and ``root/cluster.json`` describing the set; ``root`` is
    absent or an empty directory and is made all or nothing (see ``_building``).

    Validator ``vi`` serves RPC on ``base_port + i`` (every one on a free port when
    ``base_port`` is 0).
    """
    from tablechain.ledger.chain import Genesis

    if not 1 <= validators <= 100:
        raise ConfigError("a cluster has 1 to 100 validators")
    if scheme not in SCHEMES or scheme == "sm2":
        raise ConfigError(f"validator keys are secp256k1 or ed25519, not {scheme!r}")
    if base_port and not 1024 <= base_port <= 65535 - validators:
        raise ConfigError(f"--base-port must leave room for {validators} ports below 65536")
    network_id = _check_chain_options(network_id, max_block_txs, max_block_wait_ms)
    if consensus:
        _check_consensus(consensus)
    path = Path(root).resolve()
    if (path / CLUSTER_FILE).exists():
        raise ConfigError(f"{path / CLUSTER_FILE} already exists; {path} already holds a cluster")
    ids = [f"v{i}" for i in range(validators)]
    keys = [generate_private_key(scheme) for _ in ids]
    defaults = Genesis()
    genesis = Genesis(
        chain_name=chain_name, network_id=network_id, suite="international",
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        validators=tuple({"id": vid, "scheme": scheme,
                          "public_key": key.public_key.to_bytes().hex()}
                         for vid, key in zip(ids, keys, strict=True)),
        max_block_txs=max_block_txs or defaults.max_block_txs,
        max_block_wait_ms=max_block_wait_ms or defaults.max_block_wait_ms,
    )
    genesis_text = json.dumps(genesis.to_json(), indent=2) + "\n"
    members = []
    with _building(path) as building:
        for i, (vid, key) in enumerate(zip(ids, keys, strict=True)):
            (building / vid).mkdir()
            port = base_port + i if base_port else 0
            settings = NodeSettings(datadir=path / vid, key_scheme=scheme, rpc_host=host,
                                    rpc_port=port, extra={"validator_id": vid})
            _write_plain(building / vid, key)
            (building / vid / GENESIS_FILE).write_text(genesis_text, encoding="utf-8")
            (building / vid / NODE_FILE).write_text(
                json.dumps(settings.to_json(), indent=2) + "\n", encoding="utf-8")
            members.append(ClusterMember(vid, path / vid, port))
        (building / GENESIS_FILE).write_text(genesis_text, encoding="utf-8")
        chain = genesis.hash()
        layout = ClusterLayout(path, chain, f"tablechain-{chain[:16]}", tuple(members),
                               dict(consensus or {}))
        (building / CLUSTER_FILE).write_text(json.dumps({
            "chain": chain, "namespace": layout.namespace, "consensus": dict(layout.consensus),
            "validators": [{"id": m.validator_id, "datadir": m.validator_id,
                            "rpc_port": m.rpc_port} for m in members],
        }, indent=2) + "\n", encoding="utf-8")
    return layout


def _check_consensus(obj: Mapping[str, Any]) -> None:
    from tablechain.ledger.consensus import ConsensusConfig

    try:
        ConsensusConfig(**dict(obj))
    except TypeError as exc:
        raise ConfigError(f"cluster.json: unknown consensus setting: {exc}") from None
    except TablechainError as exc:
        raise ConfigError(f"cluster.json: {exc.message}") from None


def load_cluster(root: str | os.PathLike[str]) -> ClusterLayout:
    """Read ``cluster.json`` of a cluster directory made by ``init_cluster``."""
    path = Path(root).resolve()
    obj = _read_json(path / CLUSTER_FILE, "tablechain cluster init")
    if not isinstance(obj, dict) or not isinstance(obj.get("validators"), list):
        raise ConfigError(f"{path / CLUSTER_FILE} must hold an object with a validators list")
    chain, namespace = obj.get("chain"), obj.get("namespace")
    if not isinstance(chain, str) or not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"{path / CLUSTER_FILE}: chain and namespace must be strings")
    consensus = obj.get("consensus") or {}
    if not isinstance(consensus, dict):
        raise ConfigError(f"{path / CLUSTER_FILE}: consensus must be an object")
    _check_consensus(consensus)
    members = []
    for item in obj["validators"]:
        if not isinstance(item, dict):
            raise ConfigError(f"{path / CLUSTER_FILE}: each validator is an object")
        vid, sub, port = item.get("id"), item.get("datadir"), item.get("rpc_port", 0)
        if not isinstance(vid, str) or not vid or not isinstance(sub, str) or not sub:
            raise ConfigError(f"{path / CLUSTER_FILE}: a validator needs an id and a datadir")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"{path / CLUSTER_FILE}: rpc_port of {vid} must be 0..65535")
        members.append(ClusterMember(vid, (path / sub).resolve(), port))
    if not members or len({m.validator_id for m in members}) != len(members):
        raise ConfigError(f"{path / CLUSTER_FILE}: validator ids must be present and unique")
    return ClusterLayout(path, chain, namespace, tuple(members), consensus)
