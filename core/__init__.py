"""What producers and workers share: the contract and its checks, fingerprints, settings,
errors and exit codes, the broker topology, the wire format, results, remote control, and
what both command lines have in common.

Modules: `contract`, `fingerprint`, `settings`, `errors`, `topology`, `wire`, `results`,
`control`, `broker`, `cli`, `version`. Import from the module that holds a name; the
names below are the ones contract authors and both sides use most.
"""

from .contract import Contract, check_call, check_implementation, describe, not_implemented
from .errors import CeleryTasksError, ContractMismatch, ContractViolation

__all__ = ["CeleryTasksError", "Contract", "ContractMismatch", "ContractViolation",
           "check_call", "check_implementation", "describe", "not_implemented"]
