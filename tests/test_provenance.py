"""Provenance: stable hashes, versions, the git commit of the code that ran."""

from __future__ import annotations

import json

from bobench.provenance import canonical_hash, git_commit, package_versions, provenance_record


def test_canonical_hash_ignores_key_order():
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})


def test_record_has_commit_versions_and_timing():
    record = provenance_record("abc", seed=3, wall_time_s=1.23456)
    assert record["config_hash"] == "abc" and record["seed"] == 3 and record["wall_time_s"] == 1.235
    versions = json.loads(record["packages"])
    assert versions["torch"].startswith("2.") and "timm" in versions
    assert record["git_commit"] == git_commit(str(__import__("bobench.provenance").provenance.SOURCE_DIR))


def test_git_commit_outside_a_repository(tmp_path):
    assert git_commit(str(tmp_path)) == "unknown"
    assert "python" in package_versions()


def test_every_record_names_the_lock_it_was_installed_from(tmp_path):
    import hashlib

    from bobench.provenance import LOCK_FILE, lock_sha256

    record = provenance_record("abc", seed=0, wall_time_s=0.0)
    assert record["lock_sha256"] == hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    assert lock_sha256(str(tmp_path / "requirements.lock")) == "unknown"
