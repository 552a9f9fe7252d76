"""An atomic counter for numba kernels (private): the shared task queue of the LBP kernels.

numba's ``prange`` hands its iterations out statically on the OpenMP threading layer
(``numba.set_parallel_chunksize`` does not change that there), so a thread whose core
another process holds would keep its whole share. The kernels instead start one worker
per thread and each worker takes the next task from a shared counter with
:func:`fetch_add` when it is done (docs/lbp.md, "How the kernels get there").
"""
from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fetch_add(typingctx, arr, idx, val):
    """``old = arr[idx]; arr[idx] += val; return old`` as one atomic step (LLVM
    ``atomicrmw add``) on a 1-D int64 array; ``idx`` is not bounds-checked."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        return builder.atomic_rmw("add", ptr, args[2], "monotonic")

    return sig, codegen
