"""The ledger: transactions, blocks, state, the table engine, execution, the node."""

from tablechain.ledger.blocks import Block, BlockEnvironment, BlockHeader, Receipt, TxEnvironment
from tablechain.ledger.chain import Genesis, Ledger, PendingBlock, rebuild
from tablechain.ledger.execution import (
    AdmissionHook,
    ExecutionContext,
    ExecutorRegistry,
    TxExecutor,
)
from tablechain.ledger.mempool import Mempool
from tablechain.ledger.node import Event, Node, NodeConfig
from tablechain.ledger.reads import sign_read_request, verify_read_request
from tablechain.ledger.transactions import (
    EVERYONE,
    CryptoSuite,
    SignedTransaction,
    parse_transaction,
    sign_transaction,
)

__all__ = [
    "EVERYONE", "AdmissionHook", "Block", "BlockEnvironment", "BlockHeader", "CryptoSuite",
    "Event", "ExecutionContext", "ExecutorRegistry", "Genesis", "Ledger", "Mempool", "Node",
    "NodeConfig", "PendingBlock", "Receipt", "SignedTransaction", "TxEnvironment", "TxExecutor",
    "parse_transaction", "rebuild", "sign_read_request", "sign_transaction", "verify_read_request",
]
