"""LoRA deltas on a node: train one, announce it, fetch peers', verify, store, merge.

Train: a peft adapter on this node's data (``Compute``), stored by the SHA-256 of its
safetensors bytes. Publish: the bytes go on the blob shelf for anyone and a signed
``AdapterAnnounce`` (hash, size, base, rank, task, validation metric, sample count) on
gossip. Pull: the bytes come from the announcer in chunks, are checked against the signed
hash and size, then parsed and checked against this node's base model (``learning.lora.
decode``) before anything loads them; a rejected delta is recorded with its reason and never
touches a model. Merge: the policy keeps only peers' deltas whose merge with ours gains
validation accuracy on local data (best ``top_k``), then stacks them exactly (FLoRA).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cached_property
from typing import Any

import msgspec
import trio

from edgeswarm.node.adapters.adapter_store import AdapterRow, AdapterStore
from edgeswarm.node.compute import Compute
from edgeswarm.node.config import AdaptersConfig
from edgeswarm.node.store import Store
from edgeswarm.protocols.adapters.messages import AdapterAnnounce
from edgeswarm.protocols.blobs import BlobError, BlobRef, BlobShelf, fetch
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError
from edgeswarm.protocols.peer_id import PeerId

PUBLISH_TTL = 7 * 24 * 3600.0


ACTIVE_KEY = "adapters.active"


class AdapterError(ValueError):
    """A user-facing refusal (unknown digest, nothing to merge, rejected delta)."""


class Adapters:
    def __init__(
        self,
        messenger: Messenger,
        store: Store,
        config: AdaptersConfig,
        rng: random.Random,
        clock: Callable[[], float],
        compute: Compute,
        shelf: BlobShelf,
    ) -> None:
        self.messenger = messenger
        self.store = store
        self.adapter_store = AdapterStore(store)
        self.config = config
        self.rng = rng
        self.clock = clock
        self.compute = compute
        self.shelf = shelf
        # the adapter inference uses; kept in the store, so a restart (or a bad merge) loses nothing
        self.active: str | None = store.get_meta(ACTIVE_KEY)
        self._nursery: trio.Nursery | None = None
        messenger.register(AdapterAnnounce)

    # ---- model and data (loaded on first use) ----------------------------------------
    @cached_property
    def _lab(self):
        from edgeswarm.learning import digits

        train, held = digits.node_data(
            self.config.node_index, self.config.nodes, clusters=self.config.clusters, samples=self.config.samples
        )
        half = len(held) // 2
        val = digits.Split(held.x[:half], held.y[:half])
        test = digits.Split(held.x[half:], held.y[half:])
        return digits, digits.load_base(), train, val, test

    @property
    def base_id(self) -> str:
        return self._lab[0].BASE_ID

    @property
    def base_version(self) -> str:
        return self._lab[0].base_version()

    def _decode(self, data: bytes):
        from edgeswarm.learning.lora import decode

        return decode(
            data,
            self._lab[1],
            base_id=self.base_id,
            base_version=self.base_version,
            max_bytes=int(self.config.max_delta_kb * 1024),
        )

    def accuracy(self, delta, split: str = "test") -> float:
        from edgeswarm.learning.lora import apply

        digits, base, train, val, test = self._lab
        model = base if delta is None else apply(base, delta)
        return digits.accuracy(model, {"train": train, "val": val, "test": test}[split])

    # ---- service loop ------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for row in self.adapter_store.adapters():  # what we published before a restart is served again
                if row.origin in ("own", "merged") and row.stored:
                    self.shelf.offer(self._stored(row.digest), None, ttl=PUBLISH_TTL)
            subscription = self.messenger.subscribe(AdapterAnnounce)
            task_status.started()
            async for opened in subscription:
                self._on_announce(opened.sender, opened.body)

    def _on_announce(self, signer: PeerId, announce: AdapterAnnounce) -> None:
        if signer == self.messenger.local_peer:
            return
        digest = announce.blob.digest.hex()
        if self.adapter_store.adapter_data(digest) is not None:
            return
        known = self.adapter_store.adapters("announced")
        if len(known) >= self.config.max_known:
            return
        row = AdapterRow(
            digest,
            "announced",
            str(signer),
            announce.task,
            announce.rank,
            announce.blob.size,
            announce.metric,
            announce.samples,
            "",
            self.clock(),
        )
        self.adapter_store.put_adapter(row, None)
        compatible = (
            announce.base_id == self.base_id
            and announce.base_version == self.base_version
            and announce.blob.size <= self.config.max_delta_kb * 1024
        )
        if self.config.auto_fetch and compatible and self._nursery is not None:
            self._nursery.start_soon(self._pull_quietly, digest)

    async def _pull_quietly(self, digest: str) -> None:
        try:
            await self.pull(digest)
        except AdapterError:
            pass  # recorded with its reason

    # ---- commands ----------------------------------------------------------------------
    async def train(self) -> AdapterRow:
        """Train an adapter on local data and store it as this node's own."""
        import torch

        from edgeswarm.learning import lora

        _, base, train, _, _ = self._lab
        spec = lora.AdapterSpec(rank=self.config.rank, alpha=self.config.alpha, targets=tuple(self.config.targets))

        seed = self.rng.getrandbits(63)

        def work():
            torch.manual_seed(seed)  # the adapter's initial A, reproducible from the node's seeded RNG
            model = lora.adapt(base, spec)
            lora.train(model, train.x, train.y, epochs=self.config.epochs, lr=self.config.lr)
            return lora.delta_of(model, base_id=self.base_id, base_version=self.base_version)

        delta = await self.compute.run(work, reference_seconds=0.002 * self.config.epochs)
        row = self._keep(delta, "own", note="trained on local data")
        self._activate(row.digest)
        return row

    def _keep(self, delta, origin: str, note: str = "") -> AdapterRow:
        import torch

        from edgeswarm.learning import lora

        dtype = torch.float16 if self.config.dtype == "float16" else torch.float32
        data = lora.encode(delta, dtype=dtype)
        row = AdapterRow(
            lora.digest(data),
            origin,
            str(self.messenger.local_peer),
            self.config.task,
            delta.rank,
            len(data),
            self.accuracy(delta, "val"),
            len(self._lab[2]),
            note,
            self.clock(),
        )
        self.adapter_store.put_adapter(row, data)
        return row

    def _activate(self, digest: str) -> None:
        self.active = digest
        self.store.set_meta(ACTIVE_KEY, digest)

    def use(self, digest: str) -> AdapterRow:
        """Make a stored adapter (any origin: an earlier own or merged one, a verified peer's) active."""
        row = self._row(digest)
        if not row.stored:
            raise AdapterError(f"{row.digest[:12]} is only announced: `lora pull` it first")
        self._decode(self._stored(row.digest))  # still fits our base
        self._activate(row.digest)
        return row

    async def publish(self, digest: str | None = None) -> AdapterRow:
        """Offer an own or merged delta to anyone and announce it on gossip."""
        row = (
            self._row(digest)
            if digest
            else next(
                (r for r in reversed(self.adapter_store.adapters()) if r.origin in ("own", "merged") and r.stored), None
            )
        )
        if row is None or row.origin not in ("own", "merged"):
            raise AdapterError(
                "nothing of ours to publish: run `lora train` first"
                if row is None
                else f"{row.digest[:12]} is a peer's delta, not ours"
            )
        ref = self.shelf.offer(self._stored(row.digest), None, ttl=PUBLISH_TTL)
        await self.messenger.publish(
            AdapterAnnounce(
                ref, self.base_id, self.base_version, row.rank, row.task, max(0.0, min(1.0, row.metric)), row.samples
            )
        )
        return row

    def list(self) -> list[AdapterRow]:
        return self.adapter_store.adapters()

    async def pull(self, digest: str) -> AdapterRow:
        """Fetch an announced delta from its announcer, verify it and store it."""
        row = self._row(digest)
        if row.stored:
            return row
        signer = PeerId(row.signer)
        try:
            data = await fetch(
                self.messenger,
                signer,
                BlobRef(bytes.fromhex(row.digest), row.size),
                max_bytes=int(self.config.max_delta_kb * 1024),
                chunk_timeout=30.0,
            )
            self._decode(data)  # parse and check against our base before keeping it
        except (BlobError, NetworkError, ValueError) as exc:
            self.adapter_store.put_adapter(msgspec.structs.replace(row, note=f"rejected: {exc}"[:300]), None)
            self.messenger.counters.add("adapters", "rejected")
            raise AdapterError(f"{digest[:12]}: {exc}") from None
        kept = msgspec.structs.replace(row, origin="peer", note="verified")
        self.adapter_store.put_adapter(kept, data)
        self.messenger.counters.add("adapters", "fetched")
        return msgspec.structs.replace(kept, stored=True)

    async def merge(self, policy: str = "validation", method: str = "flora", force: bool = False) -> dict[str, Any]:
        """Merge our delta with peers' (``validation`` policy, or ``all``).

        The merge is always kept; it becomes active only if it is at least as accurate on
        our validation data as the active adapter, or with ``force`` (``lora use`` goes back).
        """
        from edgeswarm.learning import lora_merge

        own_rows = [r for r in self.adapter_store.adapters("own") if r.stored]
        if not own_rows:
            raise AdapterError("no own adapter: run `lora train` first")
        own_row = own_rows[-1]
        own = self._decode(self._stored(own_row.digest))
        peers = [(r, self._decode(self._stored(r.digest))) for r in self.adapter_store.adapters("peer") if r.stored]
        if method not in lora_merge.MERGES:
            raise AdapterError(f"unknown merge {method!r} (one of {', '.join(lora_merge.MERGES)})")
        merge = lora_merge.MERGES[method]

        def work():
            if policy == "all":
                chosen = peers
            elif policy == "validation":
                baseline = self.accuracy(own, "val")
                gains = {}

                def score(delta):
                    return self.accuracy(merge([own, delta], [0.5, 0.5]), "val") - baseline

                kept = lora_merge.select_by_validation(
                    [d for _, d in peers], score, threshold=self.config.min_gain, top_k=self.config.top_k
                )
                for delta, gain in kept:
                    gains[id(delta)] = gain
                chosen = [(r, d) for r, d in peers if id(d) in gains]
            else:
                raise AdapterError(f"unknown policy {policy!r} (validation or all)")
            # merge weights by sample count; a peer's claim counts up to 4x ours, so nobody
            # dominates a merge by announcing a huge number
            cap = 4 * max(own_row.samples, 1)
            weights = lora_merge.normalise([max(own_row.samples, 1)] + [min(max(r.samples, 1), cap) for r, _ in chosen])
            merged = merge([own] + [d for _, d in chosen], weights)
            return merged, [r.digest for r, _ in chosen]

        merged, chosen = await self.compute.run(work, reference_seconds=0.005 * (len(peers) + 1))
        previous = next((r for r in self.adapter_store.adapters() if r.digest == self.active and r.stored), own_row)
        row = self._keep(merged, "merged", note=f"{policy}/{method} of own + {len(chosen)} peers")
        activated = force or row.metric >= previous.metric or row.digest == previous.digest
        if activated:
            self._activate(row.digest)
        else:
            self.messenger.counters.add("adapters", "merges_not_activated")
            self.adapter_store.put_adapter(
                msgspec.structs.replace(
                    row,
                    note=row.note + f"; not activated: validation "
                    f"{row.metric:.3f} < {previous.metric:.3f} of {previous.digest[:12]}",
                ),
                None,
            )
        return {
            "digest": row.digest,
            "peers": chosen,
            "considered": len(peers),
            "val_acc": row.metric,
            "test_acc": self.accuracy(merged, "test"),
            "own_test_acc": self.accuracy(own, "test"),
            "activated": activated,
            "active": self.active,
            "active_val_acc": row.metric if activated else previous.metric,
        }

    def _stored(self, digest: str) -> bytes:
        """The bytes of an adapter whose row says it is stored."""
        data = self.adapter_store.adapter_data(digest)
        if data is None:
            raise AdapterError(f"{digest[:12]} is not stored on this node")
        return data

    def _row(self, digest: str) -> AdapterRow:
        matches = (
            [r for r in self.adapter_store.adapters() if r.digest.startswith(digest.lower())]
            if len(digest) >= 6
            else []
        )
        if len(matches) != 1:
            raise AdapterError(f"no single adapter matches {digest!r} (use at least 6 hex digits of its hash)")
        return matches[0]
