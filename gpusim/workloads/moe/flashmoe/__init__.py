"""FlashMoE: the whole distributed MoE layer as one persistent kernel per GPU (flashmoe.md
sections 2-6 and 11), on the device-driven engine of ``gpusim.execution.persistent``.

One forward on every GPU g (experts placed contiguously, ``LayerGeometry``):

1. Launch: one host launch per GPU (launch API on the rank's host thread, then the doorbell
   latency); the kernel takes all of the GPU's SMs and pays the kernel floor.
2. Clear (top-k > 1 only): all blocks zero the ``T x H`` output buffer (combine accumulates with
   atomics): an HBM write.
3. Gate: ``ceil(T/128) x ceil(E/64)`` tiles of ``2 x 128 x 64 x H`` FLOP, in waves over all
   blocks at the per-block tile rate (``gpusim.kernels.tile_gemm``); for E > 64 a ring across the
   column tiles adds ``ceil(E/64) - 1`` flag handoffs; then one grid barrier.
4. Dispatch: superblocks of ``SBZ = max(ceil(256 / max(E, 4)), 2)`` processor blocks
   (``floor(P / SBZ)`` of them) each copy the packets of the experts they own, one after another,
   starting from the next GPU's experts (the swizzle); a packet ``(g, e)`` with ``n`` routed
   tokens moves ``n x H x element`` bytes (only routed tokens: payload efficiency 1): to a remote
   expert as SM-issued stores over the fabric route (each block loads then stores every byte, so
   the packet is capped at ``SBZ x block rate / 2``; NVLink shares emerge in the fluid network),
   to a local expert as an HBM copy (read + write, ``2 n x H x element`` HBM bytes, capped at
   ``SBZ x block rate``). HBM traffic at the remote end is not modelled (as for every network
   transfer in gpusim). The packet's flag then reaches the destination after the route latency
   plus one flag handoff; a zero-token packet sends only the flag. The destination's subscriber
   decodes it into ``ceil(n/128) x TN`` GEMM0 tasks (``TN = I / 64``). Processor blocks outside a
   busy superblock are idle processors at once; a superblock's blocks join when its last copy ends.
5. Task DAG at the destination: GEMM0 tile ``[<= 128 x 64]``, K = H; when the ``TN`` GEMM0 tiles
   of a (source, expert, row tile) are done, ``TNx = H / 64`` GEMM1 tasks (K = I). Each GEMM1
   tile's epilogue writes ``rows x 64 x element`` bytes back to the source GPU (fabric route or
   local HBM; the block waits for its stores, one route latency, before its flag) and its flag
   reaches the source's subscriber one route latency plus one flag handoff later, which creates
   one combine task there: read the tile and each row's token index and gate probability, add
   into the output (``gpusim.kernels.tile_gemm.combine_tile_bytes``) through HBM.
   RDMA peers (the destination on another node, ``GPUDevice.node``; flashmoe.md sections 3, 4
   and 6): dispatch stages the rows into the sender's own send cell (an HBM copy by the
   superblock, as for a local expert), then the superblock's last block issues one non-blocking
   put of ``n x H x element`` bytes with its 8-byte signal (not modelled as bytes) over the
   route, uncapped (the NIC moves it: one fluid transfer shared max-min with everything else),
   and the superblock goes on with its next packet; the destination's subscriber sees the
   signal one flag handoff after the put completes. GEMM1 tiles of an RDMA packet write into
   the destination's local send cell (HBM, capped at the block rate); when a row tile's counter
   reaches ``TN + TNx`` one put of ``rows x H x element`` bytes goes back (uncapped), and one
   flag handoff after it completes the source's subscriber creates the row tile's ``TNx``
   combine tasks. Inter-node payload is thus exactly the routed rows (payload efficiency 1).
6. End: a GPU's kernel ends when its scheduler has run every task of its task bound (all GEMM0
   and GEMM1 tasks of the packets it receives, bound known once every dispatch signal arrived,
   plus the combines of its own tokens) and every signal arrived. The forward latency is the
   latest kernel end, measured from the first launch call (CUDA events around the launch).

Every block-issued transfer (all but the RDMA puts) is capped at one block's streaming rate
(``gpusim.kernels.tile_gemm.block_stream_Bps``: an assumption until measured). Not modelled: the
GEMM tiles' operand traffic (A and W tiles through L2/HBM; folded into the tile rate), the gate's
softmax/top-k beyond its GEMM tiles, and HBM traffic at the receiving end of remote stores.

Behaviour worth knowing. Dispatch packets of equal size finish together under max-min sharing,
so a destination's subscriber sees the flags of all sources at once and decodes them in sender
order (FlashMoE's subscriber sweeps its flags in (peer, expert) order too); with first-come
first-served scheduling every GPU then computes source 0's row tiles first, then source 1's...,
and on 8 GPUs the GEMM1 result writes of all GPUs converge on one source's NVLink ingress at a
time. The DES shows that convoy (the fluid network shares the oversubscribed port); the analytic
form does not.

``analytic`` is a closed form exact without contention in the one-GPU, one-expert case where all
tasks fit in one wave (tested against the DES to 1e-6); elsewhere it is an estimate (see its
docstring).
"""

from gpusim.workloads.moe.flashmoe.analytic import analytic
from gpusim.workloads.moe.flashmoe.des import des
from gpusim.workloads.moe.flashmoe.plan import (
    FlashMoEPlan,
    network_payload_B,
    plan_gpu,
    row_tiles,
    superblock_size,
    tile_rows,
)

__all__ = [
    "FlashMoEPlan",
    "analytic",
    "des",
    "network_payload_B",
    "plan_gpu",
    "row_tiles",
    "superblock_size",
    "tile_rows",
]
