"""tablechain.mpc: privacy-computing protocols over an abstract channel between parties.

Secret sharing over Z/2^64 in two named trust models -- ``DealerSharing`` (n parties and a
trusted dealer) and ``ReplicatedSharing`` (3 parties, honest majority, no dealer) -- with
fixed-point arithmetic, comparison, Newton iterations, secure statistics and regression.
"""

from tablechain.mpc.channel import LocalNetwork, Network, Traffic, payload_size
from tablechain.mpc.dealer import TRUST_DEALER, Dealer, DealerSharing
from tablechain.mpc.dp import (
    PrivacyAccountant,
    dp_count,
    dp_mean,
    dp_sum,
    gaussian_mechanism,
    gaussian_sigma,
    laplace_mechanism,
    laplace_scale,
)
from tablechain.mpc.errors import (
    FixedPointRangeError,
    MPCError,
    PartyError,
    ProtocolMismatch,
    ShapeMismatch,
)
from tablechain.mpc.fixedpoint import FixedPoint
from tablechain.mpc.he_errors import (
    DPError,
    GroupUnavailable,
    HEError,
    InvalidCiphertext,
    PlaintextOutOfRange,
    PrivacyBudgetExhausted,
    PSIError,
)
from tablechain.mpc.paillier import (
    PaillierPrivateKey,
    PaillierPublicKey,
    decrypt_packed,
    encrypt_packed,
    generate_keypair,
    packing_layout,
    secure_aggregate,
    train_hetero_lr,
)
from tablechain.mpc.regression import (
    LinearModel,
    LogisticModel,
    fit_linear_regression,
    logistic_regression_horizontal,
    logistic_regression_vertical,
    train_logistic_regression,
)
from tablechain.mpc.replicated import TRUST_REPLICATED, ReplicatedSharing
from tablechain.mpc.sharing import OperationCost, Revealed, SecretSharing, SharedTensor
from tablechain.mpc.statistics import (
    StatisticResult,
    secure_covariance,
    secure_mean,
    secure_sum,
    secure_variance,
    share_columns,
    share_rows,
)

__all__ = [
    "DPError",
    "GroupUnavailable",
    "HEError",
    "InvalidCiphertext",
    "PSIError",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "PlaintextOutOfRange",
    "PrivacyAccountant",
    "PrivacyBudgetExhausted",
    "decrypt_packed",
    "dp_count",
    "dp_mean",
    "dp_sum",
    "encrypt_packed",
    "gaussian_mechanism",
    "gaussian_sigma",
    "generate_keypair",
    "laplace_mechanism",
    "laplace_scale",
    "packing_layout",
    "secure_aggregate",
    "train_hetero_lr",
    "TRUST_DEALER",
    "TRUST_REPLICATED",
    "Dealer",
    "DealerSharing",
    "FixedPoint",
    "FixedPointRangeError",
    "LinearModel",
    "LocalNetwork",
    "LogisticModel",
    "MPCError",
    "Network",
    "OperationCost",
    "PartyError",
    "ProtocolMismatch",
    "ReplicatedSharing",
    "Revealed",
    "SecretSharing",
    "ShapeMismatch",
    "SharedTensor",
    "StatisticResult",
    "Traffic",
    "fit_linear_regression",
    "logistic_regression_horizontal",
    "logistic_regression_vertical",
    "payload_size",
    "secure_covariance",
    "secure_mean",
    "secure_sum",
    "secure_variance",
    "share_columns",
    "share_rows",
    "train_logistic_regression",
]
