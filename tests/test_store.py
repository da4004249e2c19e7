import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edgeswarm.node.store import MIGRATIONS, SequenceNumbers, Store, StoreError
from edgeswarm.node.swarm.peer_store import PeerStore


def test_fresh_store_is_wal_and_migrated(tmp_path):
    store = Store.open(tmp_path / "n.sqlite")
    assert store.schema_version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "n.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()
    assert Store.open(tmp_path / "n.sqlite").schema_version == len(MIGRATIONS)  # idempotent


def test_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "n.sqlite"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this edgeswarm knows"):
        Store.open(path)


def test_not_a_database_is_a_store_error(tmp_path):
    path = tmp_path / "n.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(path)


def test_peers_and_metrics_round_trip(tmp_path):
    store = Store.open(tmp_path / "n.sqlite")
    PeerStore(store).save_peers([("b", ("/ip4/1.2.3.4/tcp/1",), 3), ("a", (), 0)], now=5.0)
    PeerStore(store).save_peers([("c", (), 1), ("a", (), 2)], now=6.0)
    assert PeerStore(store).load_peers() == [("c", (), 1), ("a", (), 2)]
    for i in range(5):
        store.save_metrics(float(i), {"msgs_in": {"k": i}}, keep=3)
    assert store.latest_metrics() == (4.0, {"msgs_in": {"k": 4}})
    assert store._conn.execute("SELECT COUNT(*) FROM metrics_snapshots").fetchone()[0] == 3


def test_sequence_numbers_never_repeat_across_restarts(tmp_path):
    path = tmp_path / "n.sqlite"
    store = Store.open(path)
    seq = SequenceNumbers(store, block=10)
    first = [seq() for _ in range(15)]
    store.close()  # as if the process died: the unused rest of the block is skipped
    store = Store.open(path)
    seq = SequenceNumbers(store, block=10)
    later = [seq() for _ in range(3)]
    assert first == list(range(15)) and later == [20, 21, 22]


def test_kill_9_mid_writes_leaves_a_consistent_store(tmp_path):
    path = tmp_path / "n.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from edgeswarm.node.store import Store
        from edgeswarm.node.swarm.peer_store import PeerStore
        store = Store.open({str(path)!r})
        i = 0
        while True:
            PeerStore(store).save_peers([(f"p{{i}}-{{j}}", (), j) for j in range(50)], now=float(i))
            if i == 20:
                print("ready", flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store.open(path)
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    peers = PeerStore(store).load_peers()
    # a whole view from one write, never a mix of two
    assert len(peers) == 50 and len({p.split("-")[0] for p, _, _ in peers}) == 1


def test_known_peers_upsert_keep_newest_and_survive_reopen(tmp_path):
    path = tmp_path / "n.sqlite"
    store = Store.open(path)
    PeerStore(store).save_known_peers([("a", ("/ip4/1.1.1.1/tcp/1",), 5.0), ("b", (), 1.0), ("c", (), 3.0)], keep=10)
    PeerStore(store).save_known_peers([("a", ("/ip4/2.2.2.2/tcp/2",), 4.0), ("d", (), 9.0)], keep=3)
    store.close()
    assert PeerStore(Store.open(path)).load_known_peers() == [
        ("d", (), 9.0),
        ("a", ("/ip4/2.2.2.2/tcp/2",), 5.0),  # newest address, latest sighting kept
        ("c", (), 3.0),
    ]


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO peers VALUES ('p', '[]', 2, 1.0)")
    conn.commit()
    conn.close()
    store = Store.open(path)
    assert store.schema_version == len(MIGRATIONS) >= 2
    assert PeerStore(store).load_peers() == [("p", (), 2)] and PeerStore(store).load_known_peers() == []
