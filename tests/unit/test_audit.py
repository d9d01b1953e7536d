from __future__ import annotations

import copy

from oidc_idle.audit import GENESIS, seal, verify


def _chain(n):
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        r = seal({"event": "session.terminated", "n": i}, i, prev)
        out.append(r)
        prev = r["hash"]
    return out


def test_intact_chain_verifies():
    assert verify(_chain(5)) == []


def test_edited_record_is_named():
    chain = _chain(5)
    chain[2]["n"] = 99
    problems = verify(chain)
    assert problems and "seq=3" in problems[0] and "edited" in problems[0]


def test_removed_record_is_named():
    chain = _chain(5)
    del chain[1]
    problems = verify(chain)
    assert any("seq=3" in p for p in problems)


def test_reordered_records_are_named():
    chain = _chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    assert any("seq=3" in p for p in verify(chain))


def test_resealed_edit_still_breaks_the_next_link():
    chain = _chain(4)
    forged = copy.deepcopy(chain[1])
    forged["n"] = 42
    chain[1] = seal(forged, 2, chain[0]["hash"])
    assert any("seq=3" in p for p in verify(chain))
