"""Run untrusted student code in a bubblewrap sandbox with resource limits.

Every process that runs student code (the nbgrader kernel and the verification process of
:mod:`lossutils.grading.verify`) is started through :func:`sandbox_argv`, or forked, with the
isolation described in :class:`KernelZygote`, from a zygote started that way. See
``SECURITY.md`` for the threat model. The package's rooms:

- :mod:`.bwrap`: the bubblewrap command line (what a sandboxed process sees), its
  :class:`Limits`, and whether the sandbox works here (:func:`require_sandbox`);
- :mod:`.processes`: the processes of a sandbox's user id, and killing them;
- :mod:`.oneshot`: a command run to completion with its output capped (:func:`run_sandboxed`);
- :mod:`.zygote`: the grader's side of the kernel zygote (:class:`KernelZygote`), which forks
  one isolated kernel or verification process per submission;
- :mod:`._zygote`: the zygote itself, the program that runs inside the sandbox (standard
  library only at import: the verification zygote loads it by source, without ``lossutils``);
- :mod:`.kernel`: the ``jupyter_client`` kernel manager nbclient uses, whose kernels run in the
  sandbox (:func:`sandbox_kernel_manager`).
"""

from .bwrap import (
    DEFAULT_LIMITS,
    SEED_ENV,
    UNSANDBOXED_FLAG,
    Limits,
    SandboxUnavailable,
    require_sandbox,
    sandbox_argv,
    sandbox_available,
)
from .kernel import MAX_MESSAGE_BYTES, SandboxedKernelManager, sandbox_kernel_manager
from .oneshot import SandboxedRun, run_sandboxed
from .processes import exit_signal, kill_strays, kill_tree, kill_user
from .zygote import KernelZygote, ZygoteError, close_zygotes, kernel_zygote, zygote_supported

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_MESSAGE_BYTES",
    "SEED_ENV",
    "UNSANDBOXED_FLAG",
    "KernelZygote",
    "Limits",
    "SandboxUnavailable",
    "SandboxedKernelManager",
    "SandboxedRun",
    "ZygoteError",
    "close_zygotes",
    "exit_signal",
    "kernel_zygote",
    "kill_strays",
    "kill_tree",
    "kill_user",
    "require_sandbox",
    "run_sandboxed",
    "sandbox_argv",
    "sandbox_available",
    "sandbox_kernel_manager",
    "zygote_supported",
]
